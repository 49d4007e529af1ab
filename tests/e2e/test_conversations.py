"""Conversations: the sidebar's live badges, direct conversations, `/pm` landing in them, private rooms, leaving."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Browsing, ChatServer
from tests.e2e.harness import LIVE_MS, ChatUser, DirectoryTab, SocketWatch, Tab, wait_until

pytestmark = pytest.mark.e2e

SHOTS = Path("/tmp/shots")
DM_SOCKET_PATH = "/ws/dm/"
# Test-side only: the htmx ws extension fires htmx:wsClose (bubbling) with the CloseEvent; keep each code.
RECORD_CLOSE_CODES = """() => {
  window.__wsCloseCodes = [];
  document.addEventListener("htmx:wsClose", (event) => window.__wsCloseCodes.push(event.detail.event.code));
}"""
# A socket opened by hand from the page, as a script of the reader's could: how the server closes it.
SOCKET_CLOSE_CODE = """(path) => new Promise((resolve) => {
  const socket = new WebSocket(`ws://${location.host}${path}`);
  socket.onclose = (event) => resolve(event.code);
})"""


def open_dm(user: ChatUser, peer: str) -> Tab:
    """Open the direct conversation with `peer` in a new tab and wait until its /ws/dm/ socket is live."""
    page, watch = user.new_page(DM_SOCKET_PATH)
    page.goto(f"/dm/{peer}/")
    tab = Tab(user=user, page=page, room=f"@{peer}", watch=watch)
    tab.wait_connected()
    return tab


def follow_to_dm(page: Page, user: ChatUser, peer: str, link: Locator) -> Tab:
    """Click a link in this page that leads to the conversation with `peer`; wait until its socket is live."""
    watch = SocketWatch(path=DM_SOCKET_PATH)
    watch.attach(page)
    link.click()
    expect(page).to_have_url(re.compile(rf"/dm/{re.escape(peer)}/(#unread-divider)?$", re.IGNORECASE))
    tab = Tab(user=user, page=page, room=f"@{peer}", watch=watch)
    tab.wait_connected()
    return tab


def follow_to_room(page: Page, user: ChatUser, room: str, link: Locator) -> Tab:
    """Click a link in this page that leads to a room; wait until its room socket is live."""
    watch = SocketWatch()
    watch.attach(page)
    link.click()
    expect(page).to_have_url(re.compile(rf"/chat/{re.escape(room)}/(#unread-divider)?$", re.IGNORECASE))
    tab = Tab(user=user, page=page, room=room, watch=watch)
    tab.wait_connected()
    return tab


def sidebar_rooms(page: Page) -> Locator:
    return page.locator("nav#sidebar[aria-label='Conversations'] #sidebar-rooms li[data-room]")


def sidebar_people(page: Page) -> Locator:
    return page.locator("nav#sidebar[aria-label='Conversations'] #sidebar-dms li[data-user]")


def sidebar_room(page: Page, room: str) -> Locator:
    """A room's entry in the page's sidebar."""
    return page.locator(f"nav#sidebar #sidebar-rooms li[data-room='{room.lower()}']")


def sidebar_person(page: Page, username: str) -> Locator:
    """A person's entry (the direct conversation with them) in the page's sidebar."""
    return page.locator(f"nav#sidebar #sidebar-dms li[data-user='{username.lower()}']")


def directory_row(page: Page, room: str) -> Locator:
    """A room's row in the directory's list (`li#room-<name lowercased>`)."""
    return page.locator(f"#room-list > li#room-{room.lower()}")


def expect_no_badges(entry: Locator) -> None:
    """The entry counts nothing unread and flags no mention (absent, or empty at zero)."""
    expect(entry).to_be_visible()
    unread = entry.locator(".unread")
    expect(unread.filter(has_text=re.compile(r"\S"))).to_have_count(0)
    expect(entry.locator(".mentioned")).to_have_count(0)


def expect_private(tab: Tab, body: str, author: str) -> None:
    """The room tab shows the message once, marked private, with its author."""
    message = tab.message(body)
    expect(message).to_have_count(1, timeout=LIVE_MS)
    expect(message).to_have_class(re.compile(r"\bmessage--private\b"))
    expect(message.locator(".message-author")).to_have_text(author)


def bodies(tab: Tab) -> Locator:
    return tab.messages.locator("article.message .message-body")


def own_actions(message: Locator) -> tuple[Locator, Locator]:
    """The message's Edit and Delete buttons."""
    buttons = message.locator(".own-actions button")
    return buttons.filter(has_text="Edit"), buttons.filter(has_text="Delete")


def message_pk(message: Locator) -> int:
    expect(message).to_have_count(1)
    return int(str(message.get_attribute("id")).removeprefix("message-"))


def status(user: ChatUser, url: str) -> int:
    """The HTTP status a GET of this URL answers the user (redirects not followed)."""
    return user.context.request.get(url, max_redirects=0).status


def screenshot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def test_when_bob_posts_in_a_room_alice_joined_then_her_other_page_counts_it_and_flags_her_mention_live(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Alice joined #A (opened, closed) and reads #B: Bob's two messages in #A show "2" on A's sidebar entry, his
    "@alice" adds the mention flag, without a reload; following the entry opens #A, which then counts nothing."""
    room_a, room_b, room_c = new_room("sidebar-a"), new_room("sidebar-b"), new_room("sidebar-c")
    alice, bob = new_user("alice"), new_user("bob")
    alice.open_room(room_a).close()
    alice.open_room(room_c).close()
    alice_b = alice.open_room(room_b)
    page = alice_b.page
    expect(sidebar_rooms(page)).to_have_count(3)
    entry_a = sidebar_room(page, room_a)
    expect(entry_a.get_by_role("link")).to_have_attribute("href", f"/chat/{room_a}/#unread-divider")
    expect(sidebar_room(page, room_b).get_by_role("link")).to_have_attribute("aria-current", "page")
    for room in (room_a, room_b, room_c):
        expect_no_badges(sidebar_room(page, room))

    bob_a = bob.open_room(room_a)
    bob_a.post("first news")
    expect(entry_a.locator(".unread")).to_have_text("1", timeout=LIVE_MS)
    bob_a.post("second news")
    expect(entry_a.locator(".unread")).to_have_text("2", timeout=LIVE_MS)
    expect(entry_a.locator(".mentioned")).to_have_count(0)
    bob_a.post(f"@{alice.username} hi")
    expect(entry_a.locator(".unread")).to_have_text("3", timeout=LIVE_MS)
    expect(entry_a.locator(".mentioned")).to_be_visible(timeout=LIVE_MS)
    for room in (room_b, room_c):
        expect_no_badges(sidebar_room(page, room))
    # None of that was a reload: the page's one socket brought it.
    assert alice_b.sockets_opened() == 1
    # A page opened now renders the same counts.
    directory = alice.open_live_directory()
    expect(sidebar_room(directory.page, room_a).locator(".unread")).to_have_text("3")
    expect(sidebar_room(directory.page, room_a).locator(".mentioned")).to_be_visible()
    directory.page.close()
    screenshot(page, "room-sidebar-badges.png")

    alice_a = follow_to_room(page, alice, room_a, entry_a.get_by_role("link"))
    for body in ("first news", "second news", f"@{alice.username} hi"):
        expect(alice_a.message(body)).to_have_count(1)
    expect(entry_a.get_by_role("link")).to_have_attribute("aria-current", "page")
    expect_no_badges(entry_a)
    bob_a.post("seen as it comes")
    expect(alice_a.message("seen as it comes")).to_be_visible(timeout=LIVE_MS)
    expect_no_badges(entry_a)


def test_when_alice_opens_a_room_in_another_tab_then_her_open_page_lists_it_and_counts_its_news_live(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Alice reads #B; opening #A in a second tab puts A in B's sidebar live, and once that tab is closed, Bob's
    messages in #A count on that entry live, as for a room joined before the page opened."""
    room_a, room_b = new_room("joined-a"), new_room("joined-b")
    alice, bob = new_user("alice"), new_user("bob")
    alice_b = alice.open_room(room_b)
    expect(sidebar_rooms(alice_b.page)).to_have_count(1)
    alice.open_room(room_a).close()
    entry_a = sidebar_room(alice_b.page, room_a)
    expect(entry_a).to_be_visible(timeout=LIVE_MS)
    expect(entry_a.get_by_role("link")).to_have_attribute("href", f"/chat/{room_a}/#unread-divider")
    expect_no_badges(entry_a)

    bob_a = bob.open_room(room_a)
    bob_a.post("news for the new member")
    expect(entry_a.locator(".unread")).to_have_text("1", timeout=LIVE_MS)
    bob_a.post(f"@{alice.username} welcome")
    expect(entry_a.locator(".unread")).to_have_text("2", timeout=LIVE_MS)
    expect(entry_a.locator(".mentioned")).to_be_visible()
    assert alice_b.sockets_opened() == 1


def test_when_alice_writes_to_bob_for_the_first_time_then_his_open_room_page_lists_her_and_counts_each_message(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Bob reads a room while Alice starts their conversation at /dm/bob/: his sidebar gets her, "1", then "2"."""
    lobby = new_room("dm-count")
    alice, bob = new_user("alice"), new_user("bob")
    bob_room = bob.open_room(lobby)
    expect(sidebar_people(bob_room.page)).to_have_count(0)
    alice_dm = open_dm(alice, bob.username)
    # Opening the conversation is not news yet: Bob's sidebar lists it from its first message.
    alice_dm.post("hi bob")
    entry = sidebar_person(bob_room.page, alice.username)
    expect(entry.locator(".unread")).to_have_text("1", timeout=LIVE_MS)
    expect(entry.get_by_role("link")).to_have_attribute("href", f"/dm/{alice.username}/#unread-divider")
    alice_dm.post("are you there?")
    expect(bob_room.message("are you there?")).to_be_visible(timeout=LIVE_MS)
    expect(entry.locator(".unread")).to_have_text("2", timeout=LIVE_MS)
    alice_dm.post("third")
    expect(entry.locator(".unread")).to_have_text("3", timeout=LIVE_MS)
    expect(sidebar_people(bob_room.page)).to_have_count(1)
    assert bob_room.sockets_opened() == 1


def test_when_alice_and_bob_talk_in_their_direct_conversation_then_both_see_it_live_and_only_they_can_read_it(
    new_user: Callable[[str], ChatUser],
    new_room: Callable[[str], str],
    browsing: Browsing,
    chat_server: ChatServer,
) -> None:
    """/dm/bob/ and /dm/alice/: the sidebar entry on Bob's room page opens the conversation; messages, an edit and
    a deletion reach the other live; a reload shows the history; Carol can read none of it."""
    lobby, other = new_room("dm-lobby"), new_room("dm-other")
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    bob.open_room(other).close()
    bob_room = bob.open_room(lobby)

    alice_dm = open_dm(alice, bob.username)
    expect(alice_dm.page.locator("#room-title")).to_contain_text(bob.username)
    expect(alice_dm.page.locator("form#message-form[ws-send] input[name='message']")).to_be_visible()
    expect(alice_dm.error).to_be_attached()
    expect(sidebar_person(alice_dm.page, bob.username).get_by_role("link")).to_have_attribute("aria-current", "page")
    alice_dm.post("hi bob")
    entry = sidebar_person(bob_room.page, alice.username)
    expect(entry.locator(".unread")).to_have_text("1", timeout=LIVE_MS)

    bob_dm = follow_to_dm(bob_room.page, bob, alice.username, entry.get_by_role("link"))
    expect(bodies(bob_dm)).to_have_text(["hi bob"])
    expect(bob_dm.message("hi bob")).not_to_have_class(re.compile(r"\bmessage--private\b"))
    expect(sidebar_person(bob_dm.page, alice.username).get_by_role("link")).to_have_attribute("aria-current", "page")
    expect_no_badges(sidebar_person(bob_dm.page, alice.username))
    expect(sidebar_room(bob_dm.page, lobby)).to_be_visible()
    expect(sidebar_room(bob_dm.page, other)).to_be_visible()

    alice_dm.post("are you there?")
    expect(bob_dm.message("are you there?")).to_be_visible(timeout=LIVE_MS)
    bob_dm.post("yes, here")
    expect(alice_dm.message("yes, here")).to_be_visible(timeout=LIVE_MS)
    bob_dm.post("wrong window")
    expect(alice_dm.message("wrong window")).to_be_visible(timeout=LIVE_MS)
    # The page showing the conversation counts nothing.
    expect_no_badges(sidebar_person(alice_dm.page, bob.username))
    expect_no_badges(sidebar_person(bob_dm.page, alice.username))
    screenshot(bob_dm.page, "dm-page.png")

    # Edit and delete, as in rooms: only on one's own messages, seen live by the other.
    edited = alice_dm.message("are you there?")
    edited_pk = message_pk(edited)
    own_actions(edited)[0].click()
    editor = alice_dm.page.locator(f"form#message-{edited_pk}").get_by_role("textbox")
    expect(editor).to_have_value("are you there?")
    editor.fill("are you around?")
    editor.press("Enter")
    for tab in (alice_dm, bob_dm):
        message = tab.messages.locator(f"article#message-{edited_pk}")
        expect(message.locator(".message-body")).to_have_text("are you around?", timeout=LIVE_MS)
        expect(message.locator(".edited")).to_have_text("(edited)")
    for button in own_actions(bob_dm.message("are you around?")):
        expect(button).to_be_hidden()
    deleted_pk = message_pk(bob_dm.message("wrong window"))
    bob.accept_next_dialog()
    own_actions(bob_dm.message("wrong window"))[1].click()
    for tab in (alice_dm, bob_dm):
        expect(tab.messages.locator(f"article#message-{deleted_pk} .message-body")).to_have_text(
            "message deleted", timeout=LIVE_MS
        )
    history = ["hi bob", "are you around?", "yes, here", "message deleted"]
    expect(bodies(alice_dm)).to_have_text(history)

    bob_dm.page.reload()
    bob_dm.wait_connected(after=bob_dm.sockets_opened())
    expect(bodies(bob_dm)).to_have_text(history)
    expect(bob_dm.messages.locator(f"article#message-{edited_pk} .edited")).to_have_text("(edited)")
    # Narrow, the sidebar folds behind "Rooms" in the header bar, and opens on a click.
    bob_dm.page.set_viewport_size({"width": 600, "height": 800})
    expect(sidebar_person(bob_dm.page, alice.username)).to_be_hidden()
    bob_dm.page.locator("summary", has_text="Rooms and people").click()
    expect(sidebar_person(bob_dm.page, alice.username)).to_be_visible()
    screenshot(bob_dm.page, "dm-page-narrow.png")

    # Carol's /dm/alice/ is her own conversation with Alice: none of theirs is in it, nor reachable under it.
    carol_dm = open_dm(carol, alice.username)
    expect(carol_dm.messages.locator("article.message")).to_have_count(0)
    expect(carol_dm.messages).not_to_contain_text("hi bob")
    for url in (
        f"/dm/{alice.username}/messages/{edited_pk}/",
        f"/dm/{bob.username}/messages/{edited_pk}/",
        f"/chat/messages/{edited_pk}/edit/",
    ):
        assert status(carol, url) == 404, url
    assert "hi bob" not in carol.context.request.get(f"/dm/{alice.username}/search/?q=bob").text()
    # Case-insensitive; oneself and nobody are 404s.
    assert status(alice, f"/dm/{bob.username.upper()}/") == 200
    assert status(alice, f"/dm/{alice.username}/") == 404
    assert status(alice, "/dm/nobody-by-this-name/") == 404
    anonymous = browsing.anonymous("nobody", chat_server)
    assert status(anonymous, f"/dm/{bob.username}/") == 302


def test_when_alice_clicks_the_message_link_beside_bobs_name_then_their_conversation_opens(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """The online list's link beside a name opens the direct conversation; one's own entry shows none."""
    room = new_room("dm-link")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)
    expect(bob_tab.online_user(alice.username)).to_be_visible(timeout=LIVE_MS)
    own = alice_tab.online_users.locator(f"li:has(button:text-is('{alice.username}')) a.dm-link")
    expect(own).to_be_hidden()
    link = alice_tab.online_users.locator(f"li:has(button:text-is('{bob.username}')) a.dm-link")
    expect(link).to_have_attribute("href", f"/dm/{bob.username}/")
    expect(link).to_be_visible()
    alice_dm = follow_to_dm(alice_tab.page, alice, bob.username, link)
    alice_dm.post("found your link")


def test_when_alice_types_pm_in_a_room_then_bob_sees_it_private_there_and_in_their_conversation(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """`/pm bob hello there` in a room: marked private in both room pages, Alice in Bob's sidebar with "1",
    and the message in /dm/alice/ and /dm/bob/."""
    room = new_room("pm-room")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)

    alice_tab.send(f"/pm {bob.username} hello there")
    expect_private(bob_tab, "hello there", alice.username)
    expect_private(alice_tab, "hello there", alice.username)
    expect(alice_tab.message_input).to_have_value("")
    expect(sidebar_person(bob_tab.page, alice.username).locator(".unread")).to_have_text("1", timeout=LIVE_MS)
    screenshot(bob_tab.page, "room-whisper-and-dm-entry.png")
    expect(sidebar_person(alice_tab.page, bob.username)).to_be_visible(timeout=LIVE_MS)
    expect_no_badges(sidebar_person(alice_tab.page, bob.username))

    bob_dm = open_dm(bob, alice.username)
    expect(bob_dm.message("hello there")).to_have_count(1)
    expect(bob_dm.message("hello there").locator(".message-author")).to_have_text(alice.username)
    alice_dm = open_dm(alice, bob.username)
    expect(alice_dm.message("hello there")).to_have_count(1)
    # Typed in the conversation, a reply reaches Alice's room page as a whisper too.
    bob_dm.post("got it")
    expect(alice_dm.message("got it")).to_be_visible(timeout=LIVE_MS)
    expect_private(alice_tab, "got it", bob.username)


def test_when_alice_makes_her_room_private_then_an_outsider_is_refused_everywhere_and_a_member_gets_it(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    """Alice makes #P private and adds Bob: P appears in Bob's open sidebar and opens for him; Carol, who had left
    it with a tab still open, is closed out (4003) and gets 404 for every URL of it and no listing in the
    directory or its search."""
    private = new_room("hideout")
    lobby = new_room(f"{private}-lobby")
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    alice_p = alice.open_room(private)
    alice_p.post("before the door closed")
    # A message, so the lobby is on the directory's first page however many rooms the run made.
    carol_lobby = carol.open_room(lobby)
    carol_lobby.post("anyone here?")
    carol_lobby.close()
    carol_p = carol.open_room(private)
    carol_p.page.evaluate(RECORD_CLOSE_CODES)
    expect(carol_p.message("before the door closed")).to_be_visible()
    message = message_pk(carol_p.message("before the door closed"))
    # Carol leaves #P in a second tab; the first still shows it, connected.
    carol_leaving = carol.open_room(private)
    carol_leaving.page.locator(".room-actions").get_by_role("button", name="Leave").click()
    expect(carol_leaving.page).to_have_url(f"{chat_server.url}/chat/")
    expect(sidebar_room(carol_leaving.page, private)).to_have_count(0)
    carol_leaving.close()
    bob_directory = bob.open_live_directory()
    expect(sidebar_room(bob_directory.page, private)).to_have_count(0)

    alice_p.page.locator(".room-actions").get_by_role("link", name="Settings").click()
    expect(alice_p.page).to_have_url(f"{chat_server.url}/chat/{private}/settings/")
    alice_p.page.locator("#privacy-form input[name='private']").check()
    alice_p.page.locator("#privacy-form").get_by_role("button", name="Save").click()
    expect(alice_p.page.locator(".notices")).to_contain_text("private")
    expect(alice_p.page.locator("#privacy-form input[name='private']")).to_be_checked()

    wait_until(lambda: 0 in carol_p.watch.closed, carol_p.page, LIVE_MS, "Carol's socket to #P to close")
    assert carol_p.page.evaluate("window.__wsCloseCodes") == [4003]

    alice_p.page.locator("#member-username").fill(bob.username)
    alice_p.page.locator("#member-form").get_by_role("button", name="Add").click()
    expect(alice_p.page.locator("#room-members")).to_contain_text(bob.username)
    screenshot(alice_p.page, "room-settings.png")
    entry = sidebar_room(bob_directory.page, private)
    expect(entry).to_be_visible(timeout=LIVE_MS)
    assert len(bob_directory.watch.sockets) == 1

    # Carol, no member: 404 for the room and every URL under it, in any casing; no socket; not listed.
    for url in (
        f"/chat/{private}/",
        f"/chat/{private.upper()}/",
        f"/chat/{private}/search/?q=x",
        f"/chat/{private}/history/?before=1",
        f"/chat/{private}/messages/{message}/",
        f"/chat/{private}/settings/",
        f"/chat/{private}/private-to/?to={alice.username}",
        f"/chat/messages/{message}/edit/",
    ):
        assert status(carol, url) == 404, url
    carol_directory = carol.open_live_directory()
    assert carol_directory.page.evaluate(SOCKET_CLOSE_CODE, f"/ws/chat/{private}/") == 4003
    expect(carol_directory.row(lobby)).to_be_visible()
    expect(carol_directory.row(private)).to_have_count(0)
    expect(sidebar_room(carol_directory.page, private)).to_have_count(0)
    carol_directory.page.goto(f"/chat/?q={private[1:]}")
    expect(carol_directory.row(lobby)).to_be_visible()
    expect(carol_directory.row(private)).to_have_count(0)
    response = carol_directory.page.goto(f"/chat/{private}/")
    assert response is not None
    assert response.status == 404
    expect(carol_directory.page.locator("#messages")).to_have_count(0)
    expect(carol_directory.page.locator("body")).not_to_contain_text("before the door closed")

    bob_p = follow_to_room(bob_directory.page, bob, private, entry.get_by_role("link"))
    expect(bob_p.message("before the door closed")).to_be_visible()
    bob_p.post("thanks for the key")
    alice_back = alice.open_room(private)
    expect(alice_back.message("thanks for the key")).to_be_visible()
    expect(carol_p.message("thanks for the key")).to_have_count(0)
    assert carol_p.sockets_opened() == 1


def test_when_alice_leaves_a_room_then_it_leaves_her_sidebars_stays_in_the_directory_and_opening_rejoins(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    """Leave in the room's header: back on /chat/, #L gone from both tabs' sidebars (the other live), still
    listed; opening it again puts it back in the other tab's sidebar live."""
    room = new_room("leaving")
    alice = new_user("alice")
    alice_l = alice.open_room(room)
    # A message, so the room is at the top of the directory's first page however many rooms the run made.
    alice_l.post("about to leave")
    directory: DirectoryTab = alice.open_live_directory()
    expect(sidebar_room(directory.page, room)).to_be_visible()
    expect(sidebar_room(alice_l.page, room)).to_be_visible()

    alice_l.page.locator(".room-actions").get_by_role("button", name="Leave").click()
    expect(alice_l.page).to_have_url(f"{chat_server.url}/chat/")
    expect(alice_l.page.locator(".notices")).to_contain_text(f"You left #{room}")
    expect(sidebar_room(alice_l.page, room)).to_have_count(0)
    expect(sidebar_room(directory.page, room)).to_have_count(0, timeout=LIVE_MS)
    expect(directory_row(alice_l.page, room)).to_be_visible()
    expect(directory.row(room)).to_be_visible()
    assert len(directory.watch.sockets) == 1

    back = follow_to_room(alice_l.page, alice, room, directory_row(alice_l.page, room).get_by_role("link"))
    expect(back.message("about to leave")).to_be_visible()
    expect(sidebar_room(back.page, room)).to_be_visible()
    expect(sidebar_room(directory.page, room)).to_be_visible(timeout=LIVE_MS)
    assert len(directory.watch.sockets) == 1
