"""permessage-deflate in real headless Chromium: the demo's pages (ws4redis.js) negotiate it,
and messages both ways, small and large, arrive whole.

Chromium's DevTools protocol shows the handshake's response headers
(``Network.webSocketHandshakeResponseReceived``), so the test knows compression was really on.
"""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import expect

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytest_plugins = ["browser"]  # the fixtures: chromium, demo, open_chat

FACILITY = "chat"
PREFIX = "demo"  # the demo's WS4REDIS_PREFIX


def visitor_with_handshakes(chromium, demo) -> tuple[Any, list[dict[str, Any]]]:
    """An anonymous visitor's chat page, and the response headers of its websocket handshakes."""
    from browser import TIMEOUT_MS, ChatPage  # (the plugin module, loaded by pytest_plugins)

    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    handshakes: list[dict[str, Any]] = []
    devtools = context.new_cdp_session(page)
    devtools.on(
        "Network.webSocketHandshakeResponseReceived",
        lambda event: handshakes.append(event["response"]["headers"]),
    )
    devtools.send("Network.enable")
    return ChatPage(page, demo).open_anonymously(), handshakes


def test_chromium_negotiates_compression_and_messages_arrive_whole(
    chromium, demo, open_chat, redis_url
):
    visitor, handshakes = visitor_with_handshakes(chromium, demo)
    try:
        assert handshakes, "no websocket handshake seen"
        headers = {name.lower(): value for name, value in handshakes[-1].items()}
        extensions = headers.get("sec-websocket-extensions", "")
        assert extensions.startswith("permessage-deflate; server_no_context_takeover"), headers
        # Server to browser: a large, compressible message published by the server, and a
        # short one (sent uncompressed: compression would not make it smaller).
        settings = Settings(connection=redis_url, prefix=PREFIX)
        publisher = RedisPublisher(facility=FACILITY, broadcast=True, settings=settings)
        long_text = " ".join(f"item {i}: the trail is open, snow {i % 7} cm." for i in range(600))
        for text in (long_text, "ok"):
            announcement = {"id": text[:8], "kind": "broadcast", "from": "admin", "to": "everyone"}
            publisher.publish_message(json.dumps({**announcement, "text": text}))
        expect(visitor.messages("broadcast")).to_have_text([long_text, "ok"])
        # Browser to server: alice's page (compression negotiated too) publishes; Chromium
        # compresses what it sends, the server inflates it.
        alice = open_chat(demo, "alice")
        typed = "a compressible line, " * 20  # (the form takes up to 500 characters)
        alice.say(typed)
        expect(visitor.messages("broadcast")).to_have_text([long_text, "ok", typed.strip()])
        visitor.screenshot("compression-visitor")
    finally:
        visitor.page.context.close()
