"""Template context: ``WEBSOCKET_URI`` (ws:// or wss://) and ``WS4REDIS_HEARTBEAT``."""

from __future__ import annotations

import json
from typing import Any

from django.utils.safestring import SafeString, mark_safe

from .settings import load


def default(request: Any) -> dict[str, str | SafeString]:
    """``WEBSOCKET_URI`` (``wss://example.com/ws/``) and ``WS4REDIS_HEARTBEAT`` (a JS literal)."""
    settings = load()
    scheme = "wss://" if request.is_secure() else "ws://"
    heartbeat = json.dumps(settings.heartbeat)
    # A JavaScript literal safe inside <script>: no way out of the string or the element.
    heartbeat = heartbeat.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return {
        "WEBSOCKET_URI": scheme + request.get_host() + settings.websocket_url,
        "WS4REDIS_HEARTBEAT": mark_safe(heartbeat),
    }
