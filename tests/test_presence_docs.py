"""docs/presence.rst's samples, marked ``.. tested-presence: NAME``, run or checked for real:
the setting, the Python query, the URL, the frames a client receives, the JS client's names."""

from __future__ import annotations

import contextlib
import io
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ws4redis_gevent import settings as settings_module
from ws4redis_gevent.presence import PresenceConfig, presence_config
from ws4redis_gevent.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "presence.rst"
JS = ROOT / "ws4redis_gevent" / "static" / "ws4redis_gevent" / "ws4redis.js"
TOKEN_AUTH = "ws_callbacks.token_auth"


def sample(name: str) -> str:
    """The code block right after ``.. tested-presence: NAME``."""
    text = DOC.read_text(encoding="utf-8")
    marker = f".. tested-presence: {name}\n"
    assert text.count(marker) == 1, name
    block = text.split(marker, 1)[1].split("\n", 1)[1]  # after the code-block line
    lines = []
    for line in block.splitlines():
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def documented_setting() -> Any:
    namespace: dict[str, Any] = {}
    exec(sample("settings"), namespace)
    return namespace["WS4REDIS_PRESENCE"]


def frame_parts(frame: str) -> tuple[str, dict[str, Any]]:
    head, _, body = frame.partition("\n")
    return head, json.loads(body)


def test_the_settings_sample_is_valid_and_says_the_defaults() -> None:
    setting = documented_setting()
    assert Settings(presence=setting).presence == setting
    assert presence_config(setting, "chat") == PresenceConfig()  # "the defaults", truly


def test_the_query_url_and_frames_as_documented(start_server, redis_url):
    """The Python sample prints john; the documented URL gets the documented list frame (same
    fields), and a join gets the documented event frame (same fields)."""
    presence = documented_setting()
    server = start_server(process_request=TOKEN_AUTH, presence=presence)
    url = sample("url").strip().replace("ws://host", f"ws://127.0.0.1:{server.port}")
    john = "/ws/chat?subscribe-broadcast&subscribe-group&token=t-john"
    with server.connect(john), server.connect(john):
        settings_module.configure(connection=redis_url, presence=presence)
        try:
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                exec(sample("query"), {})
        finally:
            settings_module.reset()
        assert re.match(r"john False 2 \('[0-9a-f]{16}', '[0-9a-f]{16}'\)\n\Z", output.getvalue())
        with pytest.raises(ValueError):
            from ws4redis_gevent.presence import get_presence

            get_presence("news", settings=Settings(connection=redis_url, presence=presence))
        from websockets.sync.client import connect

        with connect(url + "&token=t-mary", open_timeout=10) as ws:
            documented_head, documented = frame_parts(sample("list-frame"))
            head, first = frame_parts(ws.recv(timeout=5))
            assert head == documented_head
            assert set(first) == set(documented)
            assert set(first["users"][0]) == set(documented["users"][0])
            assert first["users"][0] == {"name": "john", "anonymous": False, "connections": 2}
            with server.connect("/ws/chat?subscribe-broadcast&token=t-alice"):
                head, event = frame_parts(ws.recv(timeout=10))
            documented_head, documented = frame_parts(sample("event-frame"))
            assert head == documented_head
            assert set(event) == set(documented)
            assert set(event["joined"][0]) == set(documented["joined"][0])


def test_the_js_sample_uses_what_ws4redis_js_offers() -> None:
    code, source = sample("js"), JS.read_text(encoding="utf-8")
    for option in ("presence", "presence_changed", "receive_message"):
        assert re.search(rf"\b{option}:", code)
        assert re.search(rf"^\s+{option}: ", source, re.M), option  # in DEFAULTS
    assert "ws4redis.get_presence(" in code and "this.get_presence = function" in source
