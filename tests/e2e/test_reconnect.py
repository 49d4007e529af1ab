"""A server restart under open room pages: they reconnect by themselves and lose nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Browsing, ChatServer
from tests.e2e.harness import LIVE_MS, RECONNECT_AFTER_OUTAGE_MS, RECONNECT_MS

pytestmark = pytest.mark.e2e


def test_when_the_server_restarts_then_pages_reconnect_and_a_missed_message_is_in_the_log(
    browsing: Browsing, restartable_server: ChatServer, new_room: Callable[[str], str]
) -> None:
    """After a restart on the same port and database, pages reconnect, chat goes on, and a missed message shows up."""
    server = restartable_server
    room = new_room("restart")
    alice, bob = browsing.user("alice", server), browsing.user("bob", server)
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    alice_tab.send("before the restart")
    expect(bob_tab.message("before the restart")).to_be_visible(timeout=LIVE_MS)
    alice_sockets, bob_sockets = alice_tab.sockets_opened(), bob_tab.sockets_opened()

    # Bob's browser loses the network across the restart, so he is surely away while Carol talks.
    bob.context.set_offline(True)
    server.restart()

    alice_tab.wait_connected(timeout_ms=RECONNECT_MS, after=alice_sockets)
    carol = browsing.user("carol", server)
    carol_tab = carol.open_room(room)
    carol_tab.send("sent while bob was away")
    expect(alice_tab.message("sent while bob was away")).to_be_visible(timeout=LIVE_MS)
    alice_tab.send("after the restart")
    expect(carol_tab.message("after the restart")).to_be_visible(timeout=LIVE_MS)
    expect(alice_tab.message("after the restart")).to_have_count(1)
    assert not bob_tab.watch.live, "Bob's page was meant to be disconnected while Carol talked"
    expect(bob_tab.message("sent while bob was away")).to_have_count(0)

    bob.context.set_offline(False)
    bob_tab.wait_connected(timeout_ms=RECONNECT_AFTER_OUTAGE_MS, after=bob_sockets)
    expect(bob_tab.message("sent while bob was away")).to_be_visible()
    expect(bob_tab.message("after the restart")).to_be_visible()
    expect(bob_tab.message("before the restart")).to_have_count(1)

    bob_tab.send("bob is back")
    for tab in (alice_tab, carol_tab, bob_tab):
        expect(tab.message("bob is back")).to_have_count(1, timeout=LIVE_MS)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)


def test_when_the_server_restarts_then_both_pages_reconnect_and_the_next_message_arrives(
    browsing: Browsing, restartable_server: ChatServer, new_room: Callable[[str], str]
) -> None:
    """Two open pages find the restarted server by themselves; the next message reaches both, once."""
    server = restartable_server
    room = new_room("restart")
    alice, bob = browsing.user("alice", server), browsing.user("bob", server)
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    alice_tab.send("first")
    expect(bob_tab.message("first")).to_be_visible(timeout=LIVE_MS)
    sockets = {tab.user.username: tab.sockets_opened() for tab in (alice_tab, bob_tab)}

    server.restart()

    for tab in (alice_tab, bob_tab):
        tab.wait_connected(timeout_ms=RECONNECT_MS, after=sockets[tab.user.username])
    bob_tab.send("second, after the restart")
    for tab in (alice_tab, bob_tab):
        expect(tab.message("second, after the restart")).to_have_count(1, timeout=LIVE_MS)
        expect(tab.message("first")).to_have_count(1)
        expect(tab.online_user(alice.username)).to_be_visible(timeout=LIVE_MS)
        expect(tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)


def test_a_message_sent_twice_while_the_server_is_down_arrives_once_when_it_is_back(
    browsing: Browsing, restartable_server: ChatServer, new_room: Callable[[str], str]
) -> None:
    """Enter pressed twice while the connection is down: the page queues both frames and sends them once it is back,
    the same text under the same form key; the room sees the message once."""
    server = restartable_server
    room = new_room("twice")
    alice, bob = browsing.user("alice", server), browsing.user("bob", server)
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    sockets = {tab.user.username: tab.sockets_opened() for tab in (alice_tab, bob_tab)}

    server.stop()
    alice_tab.send("pressed twice while the server was down")
    alice_tab.message_input.press("Enter")
    expect(alice_tab.message_input).to_have_value("pressed twice while the server was down")
    server.start()

    for tab in (alice_tab, bob_tab):
        tab.wait_connected(timeout_ms=RECONNECT_MS, after=sockets[tab.user.username])
    expect(alice_tab.message_input).to_have_value("", timeout=LIVE_MS)
    # Frames of one socket are taken in order: once the next message shows, a second copy would have shown before it.
    alice_tab.post("and then this")
    for tab in (alice_tab, bob_tab):
        expect(tab.message("and then this")).to_have_count(1, timeout=LIVE_MS)
        expect(tab.message("pressed twice while the server was down")).to_have_count(1)
