"""Refusals in the browser: a write over its limit (429) and an upload too large for the server (413) show their
sentence in #chat-error and leave the rest of the page as it was (htmx's responseHandling in base.html)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Browsing, ChatServer, server_env
from tests.e2e.harness import LIVE_MS, ChatUser
from tests.support.servers import migrate

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    """A server of this module with low limits: one edit a minute, and files of at most 1 MiB."""
    directory = tmp_path_factory.mktemp("e2e-limits")
    env = {
        **server_env(directory / "db.sqlite3"),
        "DEBUG": "1",  # static files from the finders: no collectstatic for this server
        "CHAT_WRITE_LIMITS": "edits=1/60",
        "CHAT_ATTACHMENT_MAX_BYTES": str(1024 * 1024),
    }
    migrate(env)
    server = ChatServer(env=env, log_path=directory / "daphne.log").start()
    yield server
    server.stop()


@pytest.fixture
def limited_user(browsing: Browsing, limited_server: ChatServer) -> Callable[[str], ChatUser]:
    return lambda prefix: browsing.user(prefix, limited_server)


def test_an_edit_over_the_limit_shows_the_sentence_and_keeps_the_editor_as_typed(
    limited_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    ada = limited_user("ada")
    tab = ada.open_room(new_room("limits"))
    tab.post("first draft")
    tab.post("second draft")

    editor = tab.page.locator("form.message--editing input[name=body]")
    for before, after in (("first draft", "first, edited"), ("second draft", "second, edited")):
        tab.message(before).locator(".own-actions button", has_text="Edit").click()
        editor.fill(after)
        editor.press("Enter")
        if before == "first draft":
            expect(tab.message("first, edited")).to_have_count(1, timeout=LIVE_MS)

    sentence = re.compile(r"^Slow down: at most 1 edits per minute\. Try again in \d+ seconds\.$")
    expect(tab.error).to_have_text(sentence, timeout=LIVE_MS)
    expect(tab.error).to_have_attribute("role", "alert")
    # The refused edit changed nothing else: its editor is still there with the text as typed.
    expect(editor).to_have_value("second, edited")
    expect(tab.message("second draft")).to_have_count(0)


def test_an_upload_over_the_servers_limit_shows_the_sentence(
    limited_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    ben = limited_user("ben")
    tab = ben.open_room(new_room("big-files"))
    form = tab.page.locator("#upload-form")
    form.locator("summary").click()  # the file form is folded behind its paperclip
    big = {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"\0" * (2 * 1024 * 1024)}
    form.locator("input[name=file]").set_input_files(big)
    form.get_by_role("button", name="Upload").click()

    # daphne refused it before reading the body (config/server.py); htmx swapped its #chat-error in.
    sentence = "Files can be at most 1 MiB, one at a time; that upload is larger."
    expect(tab.error).to_have_text(sentence, timeout=LIVE_MS)
    expect(form).to_be_visible()
    expect(tab.messages.locator("a.attachment")).to_have_count(0)
