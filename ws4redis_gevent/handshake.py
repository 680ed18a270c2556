"""Checks of the opening handshake (RFC 6455 section 4.2.1), on a WSGI environ, without I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from .exceptions import HandshakeError, UpgradeRequired

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSION = "13"
_UPGRADE_HEADERS = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", SUPPORTED_VERSION)]


def header_tokens(environ: Mapping[str, Any], name: str) -> set[str]:
    """The comma-separated tokens of a request header, lower-cased."""
    value = environ.get(name, "")
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def is_upgrade_request(environ: Mapping[str, Any]) -> bool:
    """Tell whether the request asks for a websocket (``Upgrade: websocket``)."""
    return "websocket" in header_tokens(environ, "HTTP_UPGRADE")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value answering ``key`` (section 4.2.2, step 5.4)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def check_handshake(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Validate the handshake and return the headers of the 101 response.

    Raises:
        HandshakeError: with the HTTP status and a reason the client can read.
    """
    if environ.get("REQUEST_METHOD") != "GET":
        raise HandshakeError(
            "websocket handshakes use GET", HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", "GET")]
        )
    if not is_upgrade_request(environ):
        raise UpgradeRequired("this URL serves websockets only", headers=_UPGRADE_HEADERS)
    if environ.get("SERVER_PROTOCOL", "HTTP/1.1") in ("HTTP/1.0", "HTTP/0.9"):
        raise HandshakeError("websocket handshakes need HTTP/1.1")
    if "upgrade" not in header_tokens(environ, "HTTP_CONNECTION"):
        raise HandshakeError("the Connection header must contain 'Upgrade'")
    if not environ.get("HTTP_HOST", "").strip():
        raise HandshakeError("missing Host header")
    if _has_body(environ):
        raise HandshakeError("a websocket handshake has no body")
    version = environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip()
    if not version:
        raise HandshakeError("missing Sec-WebSocket-Version header")
    if version != SUPPORTED_VERSION:
        raise UpgradeRequired(
            f"unsupported websocket version {version!r}", headers=_UPGRADE_HEADERS
        )
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    if not _is_valid_key(key):
        raise HandshakeError("Sec-WebSocket-Key must be 16 bytes in base64")
    return [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]


def _is_valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        return False


def _has_body(environ: Mapping[str, Any]) -> bool:
    if environ.get("HTTP_TRANSFER_ENCODING"):
        return True
    length = str(environ.get("CONTENT_LENGTH") or "0").strip()
    return length not in ("", "0")
