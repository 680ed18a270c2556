"""Unit tests of the opening handshake checks on WSGI environs (ws4redis_gevent/handshake.py)."""

from __future__ import annotations

import base64
from http import HTTPStatus
from typing import Any

import pytest

from ws4redis_gevent.exceptions import HandshakeError, UpgradeRequired
from ws4redis_gevent.handshake import accept_key, check_handshake, is_upgrade_request

# RFC 6455 section 1.3's example.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def environ(**overrides: Any) -> dict[str, Any]:
    """A valid websocket handshake environ; ``None`` values remove a key."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/ws/foobar",
        "HTTP_HOST": "example.com",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": RFC_KEY,
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def rejection(env: dict[str, Any]) -> HandshakeError:
    """The HandshakeError check_handshake raises for ``env``; its reason must be readable."""
    with pytest.raises(HandshakeError) as info:
        check_handshake(env)
    error = info.value
    assert error.reason.strip()
    return error


def test_accept_key_matches_rfc_example() -> None:
    """accept_key computes the RFC 6455 section 1.3 example."""
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_valid_request_gets_the_101_headers() -> None:
    """A valid request returns Upgrade, Connection and the RFC's accept key."""
    headers = check_handshake(environ())
    assert dict(headers) == {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": RFC_ACCEPT,
    }


@pytest.mark.parametrize("connection", ["keep-alive, Upgrade", "upgrade", "UPGRADE,keep-alive"])
def test_connection_header_token_list_case_insensitive(connection: str) -> None:
    """'Upgrade' is found among other Connection tokens, in any case."""
    assert ("Sec-WebSocket-Accept", RFC_ACCEPT) in check_handshake(
        environ(HTTP_CONNECTION=connection)
    )


@pytest.mark.parametrize("upgrade", ["WebSocket", "websocket, h2c", "WEBSOCKET"])
def test_upgrade_header_case_insensitive(upgrade: str) -> None:
    """'websocket' in the Upgrade header is matched case-insensitively."""
    assert is_upgrade_request(environ(HTTP_UPGRADE=upgrade))
    assert check_handshake(environ(HTTP_UPGRADE=upgrade))


def test_key_with_surrounding_whitespace_accepted() -> None:
    """Whitespace around the key is not part of it."""
    headers = dict(check_handshake(environ(HTTP_SEC_WEBSOCKET_KEY=f" {RFC_KEY} ")))
    assert headers["Sec-WebSocket-Accept"] == RFC_ACCEPT


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT"])
def test_wrong_method_is_405_with_allow(method: str) -> None:
    """Only GET may open a websocket: 405 with 'Allow: GET'."""
    error = rejection(environ(REQUEST_METHOD=method))
    assert error.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert ("Allow", "GET") in error.headers


@pytest.mark.parametrize("upgrade", [None, "", "h2c"])
def test_no_websocket_upgrade_is_426(upgrade: str | None) -> None:
    """A plain request to a websocket URL: 426 naming websocket and version 13."""
    error = rejection(environ(HTTP_UPGRADE=upgrade))
    assert isinstance(error, UpgradeRequired)
    assert error.status == HTTPStatus.UPGRADE_REQUIRED
    headers = dict(error.headers)
    assert headers["Upgrade"] == "websocket"
    assert headers["Sec-WebSocket-Version"] == "13"


@pytest.mark.parametrize("protocol", ["HTTP/1.0", "HTTP/0.9"])
def test_http_before_1_1_is_400(protocol: str) -> None:
    """Websockets need HTTP/1.1 or later."""
    assert rejection(environ(SERVER_PROTOCOL=protocol)).status == HTTPStatus.BAD_REQUEST


@pytest.mark.parametrize("connection", [None, "", "keep-alive", "close", "upgraded"])
def test_connection_without_upgrade_is_400(connection: str | None) -> None:
    """The Connection header must list the 'Upgrade' token."""
    assert rejection(environ(HTTP_CONNECTION=connection)).status == HTTPStatus.BAD_REQUEST


@pytest.mark.parametrize("version", [None, "", "  "])
def test_missing_version_is_400(version: str | None) -> None:
    """No Sec-WebSocket-Version header: 400."""
    error = rejection(environ(HTTP_SEC_WEBSOCKET_VERSION=version))
    assert error.status == HTTPStatus.BAD_REQUEST
    assert not isinstance(error, UpgradeRequired)


@pytest.mark.parametrize("version", ["8", "12", "14"])
def test_unsupported_version_is_426_naming_13(version: str) -> None:
    """Another version: 426 with 'Sec-WebSocket-Version: 13' (section 4.4)."""
    error = rejection(environ(HTTP_SEC_WEBSOCKET_VERSION=version))
    assert error.status == HTTPStatus.UPGRADE_REQUIRED
    assert ("Sec-WebSocket-Version", "13") in error.headers


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "not base64!!!!!!!!!!!!==",
        "dGhlIHNhbXBsZSBub25jZQ",  # padding missing
        base64.b64encode(b"x" * 15).decode(),
        base64.b64encode(b"x" * 17).decode(),
        base64.b64encode(b"x" * 32).decode(),
        "dGhlIHNhbXBsZSBub25jZ✓==",
    ],
)
def test_bad_key_is_400(key: str | None) -> None:
    """The key must be present and be 16 bytes in base64."""
    assert rejection(environ(HTTP_SEC_WEBSOCKET_KEY=key)).status == HTTPStatus.BAD_REQUEST


def test_error_str_reads_well() -> None:
    """str(HandshakeError) gives the status, its phrase and the reason."""
    error = rejection(environ(REQUEST_METHOD="POST"))
    assert str(error).startswith("405 Method Not Allowed: ")
