"""The demo chat in real headless Chromium: people type into the page, messages travel through
runserver, Redis and ws4redis.js to other people's pages; a server restart is survived.

Each user has a browser context of their own (their own cookies), signed in through the login
page (once per user: later pages reuse that sign-in's cookies). Every wait is on a DOM
condition with a timeout (Playwright's expect / wait_for_*). Screenshots of key moments go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import signal

from playwright.sync_api import expect

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.redis_store import RedisMessage
from ws4redis_gevent.settings import Settings

pytest_plugins = ["browser"]  # the fixtures: chromium, demo, own_demo, open_chat

FACILITY = "chat"
PREFIX = "demo"  # the demo's WS4REDIS_PREFIX


def test_room_message_typed_in_one_page_shows_in_both(demo, open_chat):
    """alice types into the room form; her websocket publishes it (publish-broadcast), bob's
    page shows it, and hers too (&echo), once."""
    alice, bob = open_chat(demo, "alice"), open_chat(demo, "bob")
    alice.say("hello bob, anyone up for a hike?")
    bob.say("count me in")
    for page in (alice, bob):
        expect(page.messages("broadcast")).to_have_text(
            ["hello bob, anyone up for a hike?", "count me in"]
        )
    expect(bob.metas("broadcast").first).to_contain_text("alice → everyone")
    alice.screenshot("chat-room-alice")
    bob.screenshot("chat-room-bob")


def test_direct_message_reaches_the_recipient_and_the_sender(demo, open_chat):
    """The direct-message form (fetch POST; the view publishes to users=[bob, alice]) shows the
    message in bob's and alice's direct panels, and in nobody else's."""
    alice, bob, carol = (open_chat(demo, name) for name in ("alice", "bob", "carol"))
    alice.send("user", "bob", "psst, bob: the trail map is in your bag")
    bob.send("user", "carol", "are you joining?")
    expect(bob.messages("user")).to_have_text(
        ["psst, bob: the trail map is in your bag", "are you joining?"]
    )
    expect(bob.metas("user")).to_contain_text(["alice → bob", "bob → carol"])
    expect(alice.messages("user")).to_have_text(["psst, bob: the trail map is in your bag"])
    expect(carol.messages("user")).to_have_text(["are you joining?"])  # not alice's to bob
    bob.screenshot("chat-direct-bob")


def test_group_message_reaches_the_members_only(demo, open_chat):
    """Each user's group form offers only their own groups; a message to a group shows on its
    members' pages: bob (hikers, readers) sees both groups' messages, alice (hikers) one."""
    alice, bob = open_chat(demo, "alice"), open_chat(demo, "bob")
    expect(alice.page.locator("#panel-group select option")).to_have_text(["hikers"])
    expect(bob.page.locator("#panel-group select option")).to_have_text(["hikers", "readers"])
    bob.send("group", "readers", "book club tonight")
    alice.send("group", "hikers", "trail at 9")
    expect(bob.messages("group")).to_have_text(["book club tonight", "trail at 9"])
    # Both arrive in publish order on the one Redis connection of the server: alice's page
    # shows the later message, so it would show the earlier one had it been sent to her.
    expect(alice.messages("group")).to_have_text(["trail at 9"])
    expect(bob.metas("group")).to_contain_text(["bob → readers", "alice → hikers"])
    alice.screenshot("chat-group-alice")
    bob.screenshot("chat-group-bob")


def test_broadcast_published_by_the_server_reaches_every_page(demo, open_chat, redis_url):
    """RedisPublisher(facility="chat", broadcast=True), as a view or a task would use it, shows
    on alice's and bob's pages and on an anonymous visitor's, who can only listen."""
    alice, bob, visitor = open_chat(demo, "alice"), open_chat(demo, "bob"), open_chat(demo, None)
    expect(visitor.page.locator("#room-form")).to_have_count(0)
    expect(visitor.page.locator("#panel-user")).to_have_count(0)
    settings = Settings(connection=redis_url, prefix=PREFIX)
    publisher = RedisPublisher(facility=FACILITY, broadcast=True, settings=settings)
    publisher.publish_message(RedisMessage("The lodge closes at 10 pm."))  # plain text
    announcement = {
        "id": "a1",
        "kind": "broadcast",
        "from": "admin",
        "to": "everyone",
        "text": "Storm warning for tomorrow",
    }
    publisher.publish_message(json.dumps(announcement))
    for page in (alice, bob, visitor):
        expect(page.messages("broadcast")).to_have_text(
            ["The lodge closes at 10 pm.", "Storm warning for tomorrow"]
        )
    expect(visitor.metas("broadcast").last).to_contain_text("admin → everyone")
    visitor.screenshot("server-broadcast-anonymous")
    bob.screenshot("server-broadcast-bob")


def test_last_messages_show_again_after_a_reload(demo, open_chat):
    """Each channel keeps its last message (WS4REDIS_EXPIRE): after a reload, bob's new
    websocket shows the room's last message and his last direct message; alice's session
    form (a plain POST that reloads the page) shows its notification on the new page."""
    alice, bob = open_chat(demo, "alice"), open_chat(demo, "bob")
    alice.say("first in the room")
    alice.say("last in the room")
    alice.send("user", "bob", "the key is under the mat")
    expect(bob.messages("broadcast")).to_have_text(["first in the room", "last in the room"])
    expect(bob.messages("user")).to_have_text(["the key is under the mat"])
    bob.page.reload()
    bob.expect_state("connected")
    expect(bob.messages("broadcast")).to_have_text(["last in the room"])
    expect(bob.messages("user")).to_have_text(["the key is under the mat"])
    bob.screenshot("reload-bob-persisted")

    session_form = alice.page.locator("#session-form")
    session_form.locator("input[name=text]").fill("Your report is ready")
    with alice.page.expect_navigation():
        session_form.get_by_role("button", name="Notify me").click()
    alice.expect_state("connected")
    expect(alice.messages("session")).to_have_text(["Your report is ready"])
    expect(alice.messages("broadcast")).to_have_text(["last in the room"])
    expect(bob.messages("session")).to_have_count(0)  # another session
    alice.screenshot("reload-alice-session-notification")


def test_server_restart_reconnects_both_clients(own_demo, open_chat):
    """Stopping runserver closes the websockets (1001): both pages show "reconnecting". Started
    again on the same port, both reconnect with their backoff and show "connected"; the stored
    last message is not shown twice, and new messages flow both ways."""
    server = own_demo
    alice, bob = open_chat(server, "alice"), open_chat(server, "bob")
    alice.say("before the restart")
    expect(bob.messages("broadcast")).to_have_text(["before the restart"])

    assert server.stop(signal.SIGTERM) == 0, server.output
    for name, page in (("alice", alice), ("bob", bob)):
        page.wait_for_state("reconnecting")
        expect(page.state).to_contain_text("reconnecting in")
        page.screenshot(f"restart-reconnecting-{name}")

    server.start()  # the same port: Runserver keeps it
    server.wait_until_serving(count=2)
    for page in (alice, bob):
        page.expect_state("connected", timeout=20_000)  # the retries back off: 1, 2, 4 s...
        history = page.state_history()
        first_connect = history.index("connected")
        assert "reconnecting" in history[first_connect:], history
        assert history[-1] == "connected", history

    bob.say("after the restart")
    alice.say("welcome back")
    for page in (alice, bob):
        expect(page.messages("broadcast")).to_have_text(
            ["before the restart", "after the restart", "welcome back"]
        )
    alice.screenshot("restart-reconnected-alice")
    bob.screenshot("restart-reconnected-bob")


def test_who_is_online_shows_and_updates_live(demo, open_chat):
    """The Online panel (WS4REDIS_PRESENCE, ws4redis.js ``presence: true``): each page lists who
    is in the room; a second tab of alice counts once, with its count; a closed page leaves the
    list of the others at once, and a visitor shows up anonymously."""
    alice = open_chat(demo, "alice")
    online = alice.page.locator("#panel-online .online li")
    expect(online).to_have_text(["alice"])
    bob = open_chat(demo, "bob")
    expect(online).to_have_text(["alice", "bob"])
    expect(bob.page.locator("#panel-online .online li")).to_have_text(["alice", "bob"])
    second_tab = alice.page.context.new_page()
    second_tab.goto(f"{demo.http_url}/")
    expect(online).to_have_text(["alice (2 tabs)", "bob"])
    visitor = open_chat(demo, None)
    expect(online).to_have_text(["alice (2 tabs)", "bob", "a visitor"])
    alice.screenshot("online-alice")
    bob.page.close()
    second_tab.close()
    visitor.page.close()
    expect(online).to_have_text(["alice"])
