"""ws4redis_gevent.testing as users run it: the pytest plugin and the Django test cases, each in
a test run of its own (a subprocess: the live server monkey-patches the process it runs in).

- a plain WSGI project (tests/testing_projects/plain) with the plugin's fixtures;
- the demo site's own tests, with ``manage.py test`` and with pytest-django.

In each, the project's settings name a "production" Redis (this suite's redis-server): the
tools must never send it a single command unless the run opts in explicitly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from redis_server import RedisServer, execute
from stacks import documented_sample

ROOT = Path(__file__).resolve().parent.parent
PLAIN = ROOT / "tests" / "testing_projects" / "plain"
DEMO = ROOT / "demo_site"
RUN_TIMEOUT = 240


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # Not this run's settings (the Django fixtures set DJANGO_SETTINGS_MODULE in this process).
    dropped = ("PYTEST_", "REDIS_URL", "DJANGO_", "WS4REDIS_TEST_DB", "WS4REDIS_TEST_SETTINGS",
               "WS4REDIS_TEST_REDIS_URL")  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    result = subprocess.run(
        command, cwd=cwd, env={**environ, **env}, capture_output=True, text=True,
        timeout=RUN_TIMEOUT,
    )  # fmt: skip
    return result


def commands_seen(server: RedisServer) -> set[str]:
    """The commands the server ran since its statistics were reset (INFO and CONFIG aside)."""
    stats = execute(server, "INFO", "commandstats").decode()
    names = {line.split(":")[0].removeprefix("cmdstat_") for line in stats.splitlines()}
    return {name.split("|")[0] for name in names if name and not name.startswith("#")} - {
        "info", "config"
    }


@pytest.fixture
def production(redis_url: str, redis_server: RedisServer) -> RedisServer:
    """This suite's redis-server, standing for a production Redis, its statistics reset."""
    execute(redis_server, "CONFIG", "RESETSTAT")
    assert commands_seen(redis_server) == set()
    return redis_server


def test_plain_project_with_the_plugin(production):
    """Neither the app's connection option nor REDIS_URL is used: the embedded Redis is."""
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        PLAIN, PRODUCTION_REDIS_URL=production.url, REDIS_URL=production.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 passed" in result.stdout, result.stdout
    assert commands_seen(production) == set(), "the tests reached the configured Redis"


@pytest.mark.parametrize("given_by", ["option", "environment"])
def test_plain_project_with_a_redis_given_explicitly(production, given_by):
    """--ws4redis-redis-url or WS4REDIS_TEST_REDIS_URL opts in: then that Redis is used (and
    never flushed)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "flags"]
    env = {}
    if given_by == "option":
        command.append(f"--ws4redis-redis-url={production.url}")
    else:
        env["WS4REDIS_TEST_REDIS_URL"] = production.url
    result = run(command, PLAIN, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout, result.stdout
    seen = commands_seen(production)
    assert {"publish", "subscribe"} <= seen, seen
    assert "flushall" not in seen and "flushdb" not in seen


def demo_env(production: RedisServer, tmp_path: Path) -> dict[str, str]:
    # REDIS_URL makes the demo's settings set WS4REDIS_CONNECTION to it.
    return {"REDIS_URL": production.url, "DEMO_DATABASE": str(tmp_path / "demo.sqlite3")}


@pytest.mark.parametrize("test_database", ["memory", "file"])
def test_demo_tests_with_manage_py_test(production, tmp_path, test_database):
    """With SQLite's default in-memory test database (shared with the server's greenlets) and
    with a test database file (the server's greenlets open connections of their own)."""
    env = demo_env(production, tmp_path)
    if test_database == "file":
        env["DEMO_TEST_DATABASE"] = str(tmp_path / "test-demo.sqlite3")
    result = run([sys.executable, "manage.py", "test", "chat", "--noinput"], DEMO, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ran 9 tests" in result.stderr and "OK" in result.stderr, result.stderr
    assert commands_seen(production) == set(), "the demo's tests reached its configured Redis"


def test_demo_tests_with_pytest_django(production, tmp_path):
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], DEMO,
        **demo_env(production, tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 passed" in result.stdout, result.stdout
    assert commands_seen(production) == set(), "the demo's tests reached its configured Redis"


def test_demo_opting_in_to_the_settings_redis(production, tmp_path):
    """``--ws4redis-redis-url=settings`` is the explicit opt-in to WS4REDIS_CONNECTION."""
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-k", "test_user_websocket_receives", "--ws4redis-redis-url=settings"],
        DEMO, **demo_env(production, tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout, result.stdout
    assert {"publish", "subscribe"} <= commands_seen(production)


def test_settings_opt_in_needs_a_url(django_site, ws4redis_settings):
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from ws4redis_gevent.testing.django import redis_for

    assert redis_for(None).embedded
    assert redis_for("redis://127.0.0.1:1/0").url == "redis://127.0.0.1:1/0"
    with override_settings(WS4REDIS_CONNECTION="redis://127.0.0.1:2/0"):
        assert redis_for("settings").url == "redis://127.0.0.1:2/0"
    with override_settings(WS4REDIS_CONNECTION={}), pytest.raises(ImproperlyConfigured):
        redis_for("settings")


def test_live_mixin_refuses_a_test_case_in_a_transaction(django_site):
    """Under TestCase the server could not see the test's uncommitted data: refused before
    anything starts (nothing patched, no Redis started)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.test import TestCase
    from gevent import monkey

    from ws4redis_gevent.testing.django import LiveWebsocketMixin

    class Wrong(LiveWebsocketMixin, TestCase):
        pass

    with pytest.raises(ImproperlyConfigured, match="TransactionTestCase"):
        Wrong.setUpClass()
    assert not monkey.is_module_patched("socket")


def test_the_plugin_is_registered_and_inert_in_this_run(pytestconfig):
    """Our own run loads the plugin (entry point) and it changed nothing: nothing patched."""
    from gevent import monkey

    names = [ep.value for ep in entry_points(group="pytest11")]
    assert "ws4redis_gevent.testing.pytest_plugin" in names
    assert pytestconfig.pluginmanager.hasplugin("ws4redis_gevent")
    assert not monkey.is_module_patched("socket")


def test_importing_the_plugin_imports_no_django_gevent_or_fakeredis():
    code = (
        "import sys\n"
        "import ws4redis_gevent.testing, ws4redis_gevent.testing.pytest_plugin\n"
        "loaded = [m for m in ('django', 'gevent', 'fakeredis', 'redis') if m in sys.modules]\n"
        "print(loaded)\n"
    )
    result = run([sys.executable, "-c", code], ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_only_the_django_module_imports_django():
    """The core of the test tools works without Django (the Django parts live in django.py);
    importing them patches nothing."""
    code = (
        "import sys\n"
        "from ws4redis_gevent.testing import capture, client, live, redis_server, pytest_plugin\n"
        "from gevent import monkey\n"
        "print('django' in sys.modules, monkey.is_module_patched('socket'))\n"
    )
    result = run([sys.executable, "-c", code], ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"


# --- docs/testing.rst: each sample marked ``.. tested-testing: NAME`` runs here ----------------

TESTING_DOC = ROOT / "docs" / "testing.rst"


def doc_sample(name: str) -> str:
    """The code block of docs/testing.rst marked ``.. tested-testing: NAME``."""
    return documented_sample("tested-testing", name, TESTING_DOC)


def test_doc_samples_on_a_plain_project(production, tmp_path):
    """The capture and client samples, in a copy of the plain project whose pytest.ini is the
    doc's (naming the project's app), with the plain project's own options."""
    project = tmp_path / "plain"
    shutil.copytree(PLAIN, project, ignore=shutil.ignore_patterns("test_*.py", "__pycache__"))
    ini = doc_sample("plain-ini").replace("myproject.wsgi:application", "app:application")
    own = (PLAIN / "pytest.ini").read_text().split("\n", 2)[2]  # after [pytest] and the app
    (project / "pytest.ini").write_text(ini + own)
    (project / "test_doc_capture.py").write_text(doc_sample("capture-pytest"))
    (project / "test_doc_client.py").write_text(doc_sample("client-recovery"))
    result = run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"], project,
        PRODUCTION_REDIS_URL=production.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_notify PASSED" in result.stdout
    assert "test_a_reconnecting_client_gets_what_it_missed PASSED" in result.stdout
    assert commands_seen(production) == set()


def test_doc_test_cases_with_manage_py_test(production, tmp_path):
    tests = tmp_path / "doc_tests"
    tests.mkdir()
    (tests / "test_doc_capture_testcase.py").write_text(doc_sample("capture-testcase"))
    (tests / "test_doc_live_testcase.py").write_text(doc_sample("live-testcase"))
    result = run(
        [sys.executable, "manage.py", "test", str(tests), "--noinput", "-v", "2"], DEMO,
        **demo_env(production, tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ran 3 tests" in result.stderr, result.stderr
    assert commands_seen(production) == set()


def test_doc_live_fixture_with_pytest_django(production, tmp_path):
    sample = tmp_path / "test_doc_live_pytest.py"
    sample.write_text(doc_sample("live-pytest"))
    result = run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--rootdir", str(DEMO),
         "-c", str(DEMO / "pytest.ini"), str(sample)],
        DEMO, **demo_env(production, tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout, result.stdout
    assert commands_seen(production) == set()
