"""Installing the peers' dependencies: a venv for the Python peers, node_modules for Node.

Both live under bench/.build/peers (gitignored) and are reinstalled only when
bench/peers/requirements.txt or package.json changes (a copy of it is the stamp). A failure to
install raises ``PeerUnavailable`` with the reason, which the benchmark reports as a skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_BUILD = HERE.parent / ".build" / "peers"
VENV = PEERS_BUILD / "venv"
NODE = PEERS_BUILD / "node"
INSTALL_TIMEOUT = 600.0


class PeerUnavailable(Exception):
    """A peer's runtime or packages cannot be installed here."""


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One installer at a time (two benchmarks started at once share bench/.build)."""
    PEERS_BUILD.mkdir(parents=True, exist_ok=True)
    with open(PEERS_BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(what: str, *command: str | Path, cwd: Path | None = None) -> None:
    try:
        subprocess.run(
            [str(part) for part in command], cwd=cwd, check=True, timeout=INSTALL_TIMEOUT,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        tail = exc.stdout.decode(errors="replace")[-800:]
        raise PeerUnavailable(f"{what} failed (status {exc.returncode}): {tail}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"{what} failed: {exc}") from exc


def _install(source: Path, stamp: Path, install: list[str | Path], what: str, cwd: Path) -> None:
    """Run ``install`` unless ``stamp`` already holds ``source``'s content; then stamp it."""
    wanted = source.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print(f"peers: installing {what} (once)", file=sys.stderr, flush=True)
    _run(f"installing {what}", *install, cwd=cwd)
    stamp.write_text(wanted)


def python_peers() -> Path:
    """The Python of the peers' venv, with bench/peers/requirements.txt installed."""
    python = VENV / "bin" / "python"
    with _locked():
        if not python.exists():
            _run("making the peers' venv", sys.executable, "-m", "venv", "--clear", VENV)
        requirements = HERE / "requirements.txt"
        install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                   "-r", requirements]  # fmt: skip
        _install(requirements, VENV / ".requirements.txt", install, "the Python peers", HERE)
    return python


def node_peer() -> tuple[str, dict[str, str]]:
    """The node binary, and the environment that finds bench/peers/package.json's modules."""
    node, npm = shutil.which("node") or shutil.which("nodejs"), shutil.which("npm")
    if node is None or npm is None:
        raise PeerUnavailable("no node or npm (apt-get install nodejs npm)")
    with _locked():
        NODE.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / "package.json", NODE / "package.json")
        install = [npm, "install", "--no-audit", "--no-fund", "--no-package-lock"]
        _install(HERE / "package.json", NODE / ".package.json", install, "the Node peer", NODE)
    return node, {"NODE_PATH": str(NODE / "node_modules")}


if __name__ == "__main__":  # python -m bench.peers.environments: install both, say where
    print(python_peers(), *node_peer())
    sys.exit(os.EX_OK)
