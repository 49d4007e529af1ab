"""Rich messages in the browser: formatting, reactions seen live by another user, an image upload seen live."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Locator, expect

from tests.e2e.harness import LIVE_MS, ChatUser, Tab

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
THUMBS, PARTY = "\N{THUMBS UP SIGN}", "\N{PARTY POPPER}"
ACCENT = "rgb(49, 87, 213)"  # --accent in static/css/chat.css
LINE = "rgb(221, 225, 232)"  # --line


def article_with(tab: Tab, text: str) -> Locator:
    """The message whose body contains this text (formatted bodies are not the typed text)."""
    return tab.messages.locator("article.message").filter(has=tab.page.locator(".message-body", has_text=text))


def send_and_wait(tab: Tab, typed: str, shown: str) -> Locator:
    tab.send(typed)
    expect(tab.message_input).to_have_value("", timeout=LIVE_MS)
    message = article_with(tab, shown)
    expect(message).to_have_count(1, timeout=LIVE_MS)
    return message


def picture() -> bytes:
    """A small landscape picture, so that the thumbnail visibly is one."""
    image = Image.new("RGB", (800, 500), (120, 170, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 330, 800, 500), fill=(70, 140, 80))
    draw.ellipse((560, 60, 680, 180), fill=(250, 210, 80))
    data = io.BytesIO()
    image.save(data, format="PNG")
    return data.getvalue()


def upload(tab: Tab, name: str, content: bytes, caption: str = "") -> None:
    """Open the file form beside the message box ("Attach a file"), choose the file, add the caption, upload."""
    form = tab.page.locator("#upload-form")
    if not form.locator("input[name=file]").is_visible():
        form.locator("summary", has_text="Attach a file").click()
    expect(form.locator("input[name=file]")).to_be_visible()
    form.locator("input[name=file]").set_input_files({"name": name, "mimeType": "image/png", "buffer": content})
    form.locator("input[name=caption]").fill(caption)
    form.get_by_role("button", name="Upload").click()


def react(tab: Tab, message: Locator, emoji: str) -> None:
    """Point at the message and pick the emoji from its choices, as a person does."""
    message.hover()
    message.locator(".reaction-picker").get_by_role("button", name=f"React with {emoji}").click()


def test_when_alice_formats_a_message_then_bob_sees_bold_italic_code_a_quote_and_a_safe_link(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Markdown's small subset renders for everyone, live and after a reload; typed HTML and script links stay text."""
    room = new_room("formatting")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)

    send_and_wait(alice_tab, "**Deploy** is *done*, see `make run` at https://example.com/docs", "Deploy is done")
    send_and_wait(alice_tab, "> the build is green", "the build is green")
    send_and_wait(alice_tab, "<b>not bold</b> javascript:alert(1)", "<b>not bold</b>")

    for tab in (bob_tab, alice_tab):
        formatted = article_with(tab, "Deploy is done")
        expect(formatted).to_have_count(1, timeout=LIVE_MS)
        body = formatted.locator(".message-body")
        expect(body.locator("strong")).to_have_text("Deploy")
        expect(body.locator("em")).to_have_text("done")
        expect(body.locator("code")).to_have_text("make run")
        link = body.get_by_role("link", name="https://example.com/docs")
        expect(link).to_have_attribute("href", "https://example.com/docs")
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "nofollow noopener noreferrer")
        expect(body).to_have_text("Deploy is done, see make run at https://example.com/docs")
        expect(article_with(tab, "the build is green").locator(".message-body blockquote")).to_have_text(
            "the build is green"
        )
        plain = article_with(tab, "<b>not bold</b>").locator(".message-body")
        expect(plain).to_have_text("<b>not bold</b> javascript:alert(1)")
        expect(plain.locator("b, a")).to_have_count(0)

    bob_tab.page.reload()
    bob_tab.wait_connected(after=bob_tab.sockets_opened())
    expect(article_with(bob_tab, "Deploy is done").locator("strong")).to_have_text("Deploy")


def test_when_bob_reacts_then_alice_sees_the_count_live_and_each_page_presses_its_own(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """A reaction shows as "👍 1" on both pages at once; it looks pressed on the reactor's page only; a second
    person makes it 2, and taking one back makes it 1 again."""
    room = new_room("reactions")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)
    send_and_wait(alice_tab, "Lunch at noon?", "Lunch at noon?")
    bob_message = article_with(bob_tab, "Lunch at noon?")
    expect(bob_message).to_have_count(1, timeout=LIVE_MS)

    react(bob_tab, bob_message, THUMBS)
    alice_message = article_with(alice_tab, "Lunch at noon?")
    for message in (alice_message, bob_message):
        button = message.locator(".reactions button.reaction")
        expect(button).to_have_count(1, timeout=LIVE_MS)
        expect(button).to_have_text(re.compile(rf"^\s*{THUMBS}\s+1\s*$"))
    expect(bob_message.locator("button.reaction")).to_have_css("border-top-color", ACCENT)
    expect(alice_message.locator("button.reaction")).to_have_css("border-top-color", LINE)

    alice_message.locator("button.reaction").click()  # Alice gives the same one
    for message in (alice_message, bob_message):
        expect(message.locator("button.reaction")).to_have_text(re.compile(rf"^\s*{THUMBS}\s+2\s*$"), timeout=LIVE_MS)
    expect(alice_message.locator("button.reaction")).to_have_css("border-top-color", ACCENT)

    bob_message.locator("button.reaction").click()  # Bob takes his back
    for message in (alice_message, bob_message):
        expect(message.locator("button.reaction")).to_have_text(re.compile(rf"^\s*{THUMBS}\s+1\s*$"), timeout=LIVE_MS)
    expect(bob_message.locator("button.reaction")).to_have_css("border-top-color", LINE)

    react(alice_tab, alice_message, PARTY)
    expect(bob_message.locator("button.reaction")).to_have_count(2, timeout=LIVE_MS)
    bob_tab.page.reload()
    bob_tab.wait_connected(after=bob_tab.sockets_opened())
    expect(article_with(bob_tab, "Lunch at noon?").locator("button.reaction")).to_have_text(
        [re.compile(rf"{THUMBS}\s+1"), re.compile(rf"{PARTY}\s+1")]
    )


def test_when_alice_uploads_an_image_then_bob_sees_its_thumbnail_live_linking_to_the_full_image(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """The upload form posts the file; the image arrives in both logs as a loaded thumbnail inside a link; an empty
    file gets a sentence in #chat-error instead."""
    room = new_room("uploads")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)

    send_and_wait(alice_tab, "> is the logo finished?", "is the logo finished")
    send_and_wait(alice_tab, "The **new logo** is ready, and `v2` ships *today*: https://example.com/v2", "new logo")
    reacted = article_with(bob_tab, "new logo")
    expect(reacted).to_have_count(1, timeout=LIVE_MS)
    react(bob_tab, reacted, PARTY)
    react(bob_tab, reacted, THUMBS)
    expect(article_with(alice_tab, "new logo").locator("button.reaction")).to_have_count(2, timeout=LIVE_MS)

    upload(alice_tab, "hills.png", picture(), caption="View from the office")
    for tab in (alice_tab, bob_tab):
        message = article_with(tab, "View from the office")
        expect(message).to_have_count(1, timeout=LIVE_MS)
        link = message.locator("a.attachment--image")
        image = link.locator("img")
        expect(image).to_have_attribute("alt", "hills.png")
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") == 320
        href = str(link.get_attribute("href"))
        full = tab.page.request.get(href)
        assert full.status == 200
        assert full.headers["content-type"] == "image/png"
        assert full.headers["x-content-type-options"] == "nosniff"
        assert full.body() == picture()
    expect(alice_tab.page.locator("#upload-form input[name=file]")).to_have_value("")
    expect(alice_tab.error).to_have_text("")

    react(alice_tab, article_with(alice_tab, "View from the office"), "\N{HEAVY BLACK HEART}\ufe0f")
    expect(article_with(bob_tab, "View from the office").locator("button.reaction")).to_have_count(1, timeout=LIVE_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Bob points at the image: its reaction choices show, the other messages' are not there (not merely see-through).
    article_with(bob_tab, "View from the office").locator(".message-body").hover()
    expect(article_with(bob_tab, "new logo").locator(".reaction-picker")).to_be_hidden()
    expect(article_with(bob_tab, "View from the office").locator(".reaction-picker")).to_be_visible()
    bob_tab.page.screenshot(path=str(SCREENSHOTS / "features-rich-messages.png"))

    upload(alice_tab, "empty.txt", b"")
    expect(alice_tab.error).to_have_text("That file is empty: choose a file to share.", timeout=LIVE_MS)


def test_when_a_message_is_pointed_at_then_its_reaction_choices_are_visible_buttons_even_without_colour_emoji(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Each choice is drawn as a button (a border and a tint on the white message) whatever the emoji font draws,
    and only the pointed message shows them."""
    room = new_room("choices")
    alice = new_user("alice")
    tab = alice.open_room(room)
    first, second = tab.post("first"), tab.post("second")
    second.hover()
    choices = second.locator(".reaction-choice")
    expect(choices).to_have_count(8)
    for index in range(8):
        choice = choices.nth(index)
        expect(choice).to_be_visible()
        expect(choice).to_have_css("border-top-style", "solid")
        expect(choice).to_have_css("border-top-color", LINE)
        expect(choice).not_to_have_css("background-color", "rgba(0, 0, 0, 0)")
        expect(choice).not_to_have_css("background-color", "rgb(255, 255, 255)")
        expect(choice).to_have_attribute("tabindex", "-1")
    expect(first.locator(".reaction-picker")).to_be_hidden()
