"""Packaging as a user gets it: ``python -m build`` makes an sdist and a wheel, ``twine check``
passes on both, and the wheel (not an editable install) installed into a fresh venv serves the
demo site: pages, ws4redis.js from the wheel's static files, websockets.

The build and the installs use pip's cache (the package registry on a first run); the fresh
venv lives in the test's temporary directory.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from runserver_process import Runserver

import ws4redis_gevent
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo_site"
STATIC_FILES = ("ws4redis_gevent/static/ws4redis_gevent/ws4redis.js", "ws4redis_gevent/py.typed")


def run(*cmd: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel ``python -m build`` makes (the wheel is built from the sdist)."""
    outdir = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", outdir, ROOT)
    version = ws4redis_gevent.__version__
    return {
        "sdist": outdir / f"ws4redis_gevent-{version}.tar.gz",
        "wheel": outdir / f"ws4redis_gevent-{version}-py3-none-any.whl",
    }


def test_build_makes_an_sdist_and_a_wheel_that_twine_accepts(dist):
    """Both files exist, carry the version, hold the static files and the changelog (sdist),
    and pass ``twine check`` (the README renders on PyPI)."""
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert set(STATIC_FILES) <= set(names)
    assert not any(name.startswith(("tests/", "demo_site/", "examples/")) for name in names)
    assert f"Version: {ws4redis_gevent.__version__}" in metadata.decode()
    assert "Provides-Extra: geventwebsocket" in metadata.decode()
    with tarfile.open(dist["sdist"]) as sdist:
        members = {re.sub(r"^[^/]+/", "", name) for name in sdist.getnames()}
    assert {"CHANGELOG.rst", "README.rst", "setup.cfg", *STATIC_FILES} <= members
    output = run(sys.executable, "-m", "twine", "check", "--strict", dist["sdist"], dist["wheel"])
    assert output.count("PASSED") == 2, output


def test_wheel_in_a_fresh_venv_serves_the_demo(dist, tmp_path, redis_url):
    """The wheel, with its ``demo`` extra, in a new venv: the installed package (not this
    checkout) serves the demo site's pages, ws4redis.js and a websocket that receives what is
    published."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
        f"{dist['wheel']}[demo]")  # fmt: skip
    where = run(python, "-c", "import ws4redis_gevent; print(ws4redis_gevent.__file__)", cwd=DEMO)
    assert where.startswith(str(venv)), where  # the wheel's copy, even from the demo's folder
    env = {"DEMO_DATABASE": str(tmp_path / "db.sqlite3"), "REDIS_URL": redis_url}
    server = Runserver(DEMO, ["--noreload"], env=env, python=str(python))
    run(python, "manage.py", "migrate", "--noinput", cwd=DEMO, env=server.env)
    server.start()
    try:
        server.wait_until_serving(timeout=30)
        status, page = server.get("/")
        assert status == 200 and "ws4redis_gevent/ws4redis.js" in page
        status, script = server.get("/static/ws4redis_gevent/ws4redis.js")
        assert status == 200 and "WS4Redis" in script
        with server.connect("/ws/smoke?subscribe-broadcast") as ws:
            settings = Settings(connection=redis_url, prefix="demo")  # the demo's prefix
            publisher = RedisPublisher(facility="smoke", broadcast=True, settings=settings)
            publisher.publish_message("smoke ✓")
            assert ws.recv(timeout=5) == "smoke ✓"
    finally:
        server.stop()


def test_documented_pip_commands_name_real_extras():
    """docs/install.rst's ``pip install`` lines (``.. tested-install: pip-commands``) install
    this distribution with extras setup.cfg defines."""
    import configparser
    import shlex

    from test_readme_samples import extract_samples

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    extras = set(setup["options.extras_require"])
    samples = [s for s in extract_samples(ROOT / "docs" / "install.rst") if s.tag]
    commands = [shlex.split(line, comments=True) for s in samples for line in s.code.splitlines()]
    assert len(commands) == 5
    for command in commands:
        assert command[:2] == ["pip", "install"], command
        match = re.fullmatch(r"ws4redis-gevent(?:\[([\w,]+)\])?", command[2])
        assert match, command
        assert set(filter(None, (match.group(1) or "").split(","))) <= extras, command
