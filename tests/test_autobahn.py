"""The Autobahn|Testsuite's fuzzingclient against the gunicorn worker and the uWSGI backend.

Every case of the suite (sections 1 to 13, permessage-deflate included) runs against a real
server with one worker, echoing through a real Redis: the websocket publishes what it receives
on a broadcast channel it subscribes to, with ``echo``. The maximum message size is raised to
32 MiB for section 9 (16 MiB messages) and the publish rate limit is off.

A case fails the test when it is FAILED or UNIMPLEMENTED, or NON-STRICT without being listed,
with its reason and backend, in docs/conformance.rst. (A listed case may pass: the echo-through-
Redis cases listed there are OK when the echo happens to come back before the close.) The HTML
reports stay in test-artifacts/autobahn/BACKEND/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from autobahn_suite import (
    ARTIFACTS,
    CONFORMANCE_DOC,
    NoPython27,
    SuiteUnavailable,
    allowed_outcomes,
    install,
    require_python27,
    run_fuzzingclient,
    totals,
    unexpected,
)
from stacks import Stack, missing_binary, start_stack

pytestmark = pytest.mark.integration

PATH = "/ws/echo?subscribe-broadcast&publish-broadcast&echo"
# expire 0: no persisted message, which a new websocket would receive first (the previous
# case's last message). facility_per_connection (tests/serve.py): each websocket echoes on a
# broadcast channel of its own, see docs/conformance.rst.
OPTIONS = {
    "max_message_size": 32 << 20,
    "publish_rate": None,
    "publish_bytes_rate": None,  # sections 9, 12 and 13 echo megabytes a second
    "expire": 0,
    "compression": True,
    "facility_per_connection": True,
}
# The backend of each stack, as docs/conformance.rst names them.
BACKENDS = {"gunicorn": "gunicorn", "uwsgi-http-socket": "uwsgi"}
SUITE_TIMEOUT = 3600.0
FULL = 517  # every case of autobahntestsuite 25.10.1
# Sections 12 and 13 (permessage-deflate) send 1,000 messages per case, one at a time, up to
# 128 KiB each and in fragments down to 256 bytes: all 216 cases keep wstest (Python 2.7) busy
# for half an hour per server on this machine. By default they run with messages of 16 bytes
# (sent back uncompressed: compression would not make them smaller) and 16 KiB (more than a
# 4 KiB window) for every payload kind and every offer, and in 256-byte fragments with the
# default offer and without context takeover; WS4REDIS_AUTOBAHN_FULL=1 runs all of them.
DEFLATE_GROUPS = [f"12.{g}" for g in range(1, 6)] + [f"13.{g}" for g in range(1, 8)]
DEFAULT_CASES = (
    [f"{s}.*" for s in range(1, 12)]
    + [f"{group}.{index}" for group in DEFLATE_GROUPS for index in (1, 7)]
    + ["12.1.11", "13.2.11"]
)


@pytest.fixture(scope="module")
def wstest() -> str:
    try:
        return str(install())
    except NoPython27 as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))  # CI must run the suite: never skip it there
        pytest.skip(str(exc))
    except SuiteUnavailable as exc:
        pytest.fail(str(exc))  # a failed installation is a failure everywhere


@pytest.fixture(params=list(BACKENDS))
def stack(request, redis_server) -> Iterator[Stack]:
    reason = missing_binary(request.param)
    if reason:
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)
    if not redis_server.running:
        redis_server.start()
    stack = start_stack(request.param, {"connection": redis_server.url, **OPTIONS})
    yield stack
    logs = stack.stop()
    (ARTIFACTS / BACKENDS[request.param]).mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / BACKENDS[request.param] / "server.log").write_text(logs)


@pytest.mark.timeout(SUITE_TIMEOUT + 60)
def test_fuzzingclient(wstest, stack):
    backend = BACKENDS[stack.kind]
    outdir = ARTIFACTS / backend
    full = os.environ.get("WS4REDIS_AUTOBAHN_FULL") == "1"
    cases = ["*"] if full else DEFAULT_CASES
    results = run_fuzzingclient(
        wstest, f"ws4redis-gevent-{backend}", stack.ws_url(PATH), outdir, cases, SUITE_TIMEOUT
    )
    allowances = allowed_outcomes()
    summary = f"{backend}: {totals(results)}; reports in {outdir}"
    print(summary)
    deflate_cases = len(DEFAULT_CASES) - 11  # (the 11 others are patterns for sections 1-11)
    assert len(results) == (FULL if full else FULL - len(DEFLATE_GROUPS) * 18 + deflate_cases), (
        summary
    )
    assert unexpected(results, backend, allowances) == {}, summary


def test_conformance_doc_gives_a_reason_for_each_allowed_case():
    allowances = allowed_outcomes()
    assert allowances, f"no list of allowed outcomes found in {CONFORMANCE_DOC}"
    for allowance in allowances:
        assert allowance.outcome in {"NON-STRICT", "INFORMATIONAL"}, allowance
        assert allowance.backends <= set(BACKENDS.values()), allowance
        assert len(allowance.reason.split()) >= 5, allowance


def test_missing_python27_is_reported_with_where_it_was_looked_for(monkeypatch, tmp_path):
    """Without a Python 2.7 the suite cannot be installed: the error says where it looked and
    what to do (the fixture skips on it, or fails under CI=true)."""
    for name in ("WS4REDIS_PYTHON27",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    with pytest.raises(NoPython27, match=r"pyenv install 2\.7\.18.*WS4REDIS_PYTHON27"):
        require_python27()
