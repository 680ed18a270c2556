"""The gevent-websocket backend: under gevent-websocket's own handler (pywsgi with
``handler_class=geventwebsocket.handler.WebSocketHandler``, and its gunicorn worker), the
middleware adopts the websocket the handler upgraded.

The wire scenarios (messages, close codes and reasons, pings, the size limit) run on both
gevent-websocket stacks in tests/test_stacks.py. Here: what differs because that handler
upgrades before the application runs (refusals become close codes, the 101 precedes the
subscriptions), that idle websockets are parked, and that no traceback is logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from http import HTTPStatus

import pytest
import redis
from conftest import wait_for
from raw_client import CLOSE, TEXT, RawClient
from stacks import Stack, start_stack

from ws4redis_gevent.backends.geventwebsocket import CLOSE_CODES, close_code_for
from ws4redis_gevent.exceptions import (
    HandshakeError,
    PermissionDenied,
    ServiceUnavailable,
    UpgradeRequired,
)
from ws4redis_gevent.frames import CloseCode

pytestmark = pytest.mark.integration

KINDS = ("geventwebsocket", "gunicorn-geventwebsocket")


@pytest.fixture
def start(redis_url) -> Iterator:
    stacks: list[Stack] = []

    def start_one(kind: str, **options) -> Stack:
        stack = start_stack(kind, {"connection": redis_url, **options})
        stacks.append(stack)
        return stack

    yield start_one
    for stack in stacks:
        logs = stack.stop()
        assert "Traceback" not in logs, logs


def closed_with(client: RawClient) -> tuple[int, str]:
    close, _ = client.read_until_close()
    assert close.opcode == CLOSE
    assert client.reaches_eof()
    return close.close_code, close.close_reason


def test_every_refusal_status_has_a_close_code():
    """The refusals the middleware makes map to the codes docs/deployment.rst lists."""
    assert close_code_for(PermissionDenied().status) == CloseCode.POLICY_VIOLATION
    assert close_code_for(HandshakeError("x", HTTPStatus.NOT_FOUND).status) == 1008
    assert close_code_for(ServiceUnavailable("x").status) == CloseCode.TRY_AGAIN_LATER
    assert close_code_for(UpgradeRequired("x").status) == CloseCode.PROTOCOL_ERROR
    assert close_code_for(HandshakeError("x").status) == CloseCode.PROTOCOL_ERROR
    assert close_code_for(HTTPStatus.INTERNAL_SERVER_ERROR) == CloseCode.INTERNAL_ERROR
    assert set(CLOSE_CODES.values()) <= set(CloseCode)


@pytest.mark.parametrize("kind", KINDS)
def test_forbidden_becomes_1008_with_the_reason(start, kind):
    """WS4REDIS_ALLOWED_CHANNELS refusing (403 on other servers) closes with 1008 after the
    handler's 101, with the refusal's reason; nothing is subscribed."""
    stack = start(kind, allowed_channels="ws_callbacks.deny")
    with RawClient(stack.port, "/ws/chat?subscribe-broadcast") as client:
        assert closed_with(client) == (1008, "no websockets for you")
    assert stack.stats()["channels"] == {}


@pytest.mark.parametrize("kind", KINDS)
def test_no_facility_becomes_1008_and_too_many_becomes_1013(start, kind):
    """No facility (404 elsewhere) closes with 1008; WS4REDIS_MAX_CONNECTIONS reached (503
    elsewhere) closes with 1013, try again later."""
    stack = start(kind, max_connections=1)
    with RawClient(stack.port, "/ws/?subscribe-broadcast") as client:
        assert closed_with(client) == (1008, "no facility in the URL")
    with stack.connect("/ws/chat?subscribe-broadcast"):
        with RawClient(stack.port, "/ws/chat?subscribe-broadcast") as client:
            code, reason = closed_with(client)
        assert (code, reason) == (1013, "too many websockets on this worker, try again later")
    wait_for(lambda: stack.stats()["websockets"] == 0, timeout=10)


def test_the_101_comes_before_the_application_runs(start, redis_url):
    """The documented exception: the handler answers 101 before the middleware has identified
    the client and subscribed, so a message published as soon as the client sees the
    websocket open can be missed. Here the application (WS4REDIS_PROCESS_REQUEST) waits for a
    go from the test, and the client is connected all the same; its first answer to a ping
    comes once subscribed."""
    stack = start("geventwebsocket", process_request="ws_callbacks.wait_for_go")
    facility = f"f{uuid.uuid4().hex[:12]}"
    with (
        redis.Redis.from_url(redis_url) as client,
        RawClient(stack.port, f"/ws/{facility}?subscribe-broadcast") as raw,  # 101 received
    ):
        assert client.publish(f"broadcast:{facility}", "too early") == 0
        client.set("go", "1")
        raw.send_frame(0x9, b"ready?")
        assert raw.read_frame().payload == b"ready?"  # the relay's pong: subscribed now
        assert client.publish(f"broadcast:{facility}", "now") == 1
        frame = raw.read_frame()
        assert (frame.opcode, frame.payload) == (TEXT, b"now")


def test_idle_websockets_are_parked_without_a_greenlet(start):
    """The backend takes the socket over, so idle websockets wait on the event loop, as under
    ws4redis_gevent's own handler: 30 open websockets add far fewer than 30 greenlets."""
    stack = start("geventwebsocket")
    baseline = stack.stats()["greenlets"]
    sockets = [stack.connect(f"/ws/park{i}?subscribe-broadcast") for i in range(30)]
    try:
        wait_for(lambda: stack.stats()["websockets"] == 30, timeout=10)
        assert stack.stats()["greenlets"] - baseline < 10
    finally:
        for ws in sockets:
            ws.close()
    wait_for(lambda: stack.stats()["websockets"] == 0, timeout=10)
