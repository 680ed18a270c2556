"""The Autobahn|Testsuite for tests/test_autobahn.py: installed, run, its results read.

``autobahntestsuite`` 25.10.1 runs on Python 2.7 only. It is installed into its own virtualenv,
``.venv-autobahn`` in the repository, made with ``virtualenv<20.22`` (the last release that can
make a 2.7 environment) from a Python 2.7 found on the machine (``WS4REDIS_PYTHON27``, pyenv's
2.7.18, or ``python2.7`` on PATH), with the pins of ``tests/autobahn/constraints-py27.txt``
(newer releases of its dependencies no longer install on 2.7). The installation is done once
and redone when the pins change.

docs/conformance.rst lists the cases that may end other than OK, with their reason; the test
reads that list from there (``allowed_outcomes``), so the page and the test cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CONSTRAINTS = TESTS / "autobahn" / "constraints-py27.txt"
VENV = ROOT / ".venv-autobahn"
WSTEST = VENV / "bin" / "wstest"
ARTIFACTS = ROOT / "test-artifacts" / "autobahn"
CONFORMANCE_DOC = ROOT / "docs" / "conformance.rst"
VERSION = "25.10.1"
PYTHON27_ENV = "WS4REDIS_PYTHON27"

# Outcomes that pass without being listed. INFORMATIONAL cases have no right answer (e.g. the
# close reason text); UNIMPLEMENTED means an extension the server lacks, and FAILED is a bug.
PASSING = frozenset({"OK", "INFORMATIONAL"})


class SuiteUnavailable(RuntimeError):
    """The suite cannot be installed here; the message says why and what to do."""


class NoPython27(SuiteUnavailable):
    """No Python 2.7 on this machine: the suite cannot run here at all."""


def find_python27() -> str | None:
    """A Python 2.7 interpreter: $WS4REDIS_PYTHON27, pyenv's 2.7.18, or python2.7 on PATH."""
    if os.environ.get(PYTHON27_ENV):
        given = os.environ[PYTHON27_ENV]
        return given if os.access(given, os.X_OK) else None
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        result = subprocess.run([pyenv, "root"], capture_output=True, text=True)
        roots.insert(0, result.stdout.strip())
    for root in filter(None, roots):
        candidate = Path(root) / "versions" / "2.7.18" / "bin" / "python"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("python2.7")


def require_python27() -> str:
    """The Python 2.7 to install the suite with.

    Raises:
        NoPython27: with where it was looked for and how to get one.
    """
    python27 = find_python27()
    if python27 is None:
        raise NoPython27(
            "no Python 2.7 for the Autobahn testsuite (it runs on 2.7 only): looked for "
            f"${PYTHON27_ENV}, $(pyenv root)/versions/2.7.18/bin/python (also in $PYENV_ROOT "
            "and ~/.pyenv) and python2.7 on PATH. Install it with `pyenv install 2.7.18`, or "
            f"point {PYTHON27_ENV} at one."
        )
    return python27


def install() -> Path:
    """Install the suite into .venv-autobahn unless done already; returns ``wstest``'s path.

    Raises:
        NoPython27: no Python 2.7 here.
        SuiteUnavailable: the installation failed (with pip's output).
    """
    stamp = VENV / f".installed-{_digest()}"
    if stamp.exists() and WSTEST.exists():
        return WSTEST
    python27 = require_python27()
    shutil.rmtree(VENV, ignore_errors=True)
    tools = VENV.with_name(".venv-autobahn-tools")
    shutil.rmtree(tools, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--target", str(tools), "virtualenv<20.22"])
    env = {**os.environ, "PYTHONPATH": str(tools)}
    _run([sys.executable, "-m", "virtualenv", "-q", "-p", python27, str(VENV)], env=env)
    venv_pip = [str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    _run([*venv_pip, "-c", str(CONSTRAINTS), f"autobahntestsuite=={VERSION}"])
    shutil.rmtree(tools, ignore_errors=True)
    stamp.touch()
    return WSTEST


def _digest() -> str:
    return hashlib.sha256(CONSTRAINTS.read_bytes() + VERSION.encode()).hexdigest()[:16]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0:
        raise SuiteUnavailable(
            f"installing the Autobahn testsuite failed: {' '.join(cmd)}\n"
            f"{result.stdout}\n{result.stderr}"
        )


def run_fuzzingclient(
    wstest: Path, agent: str, url: str, outdir: Path, cases: list[str], timeout: float
) -> dict:
    """Run ``cases`` (ids, ``*`` patterns) against ``url``; returns the agent's results from
    reports/index.json (case id -> {"behavior": ..., "behaviorClose": ..., ...}). The HTML
    reports stay in ``outdir``."""
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    with open(outdir / "wstest.log", "wb") as log:
        subprocess.run(
            [str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)],
            cwd=outdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=True,
        )
    index = json.loads((outdir / "index.json").read_text())
    return index[agent]


@dataclass(frozen=True)
class Allowance:
    """A case that may end with ``outcome`` on ``backends``, for ``reason``."""

    case: str
    outcome: str
    backends: frozenset[str]
    reason: str


# An item of the list in docs/conformance.rst:
#   - NON-STRICT on gunicorn, uwsgi: 3.2, 3.3, 4.1.3 -- the reason, which may go on
#     over the following lines.
_ITEM = re.compile(
    r"^- (?P<outcome>[A-Z-]+) on (?P<backends>[a-z, ]+): (?P<cases>[\d.]+(?:, [\d.]+)*) -- "
    r"(?P<reason>.+)$"
)


def allowed_outcomes(doc: Path = CONFORMANCE_DOC) -> list[Allowance]:
    """The cases docs/conformance.rst allows to end other than OK, with their reasons."""
    allowances = []
    for line in doc.read_text().splitlines():
        match = _ITEM.match(line)
        if match is None:
            continue
        backends = frozenset(b.strip() for b in match["backends"].split(","))
        for case in match["cases"].split(", "):
            allowances.append(Allowance(case, match["outcome"], backends, match["reason"]))
    return allowances


def unexpected(results: dict, backend: str, allowances: list[Allowance]) -> dict[str, str]:
    """The cases whose outcome is neither passing nor allowed on ``backend``: id -> outcome."""
    allowed = {(a.case, a.outcome) for a in allowances if backend in a.backends}
    bad = {}
    for case, result in results.items():
        outcome = result["behavior"]
        if outcome not in PASSING and (case, outcome) not in allowed:
            bad[case] = outcome
    return bad


def totals(results: dict) -> dict[str, int]:
    """How many cases ended with each outcome."""
    counts: dict[str, int] = {}
    for result in results.values():
        counts[result["behavior"]] = counts.get(result["behavior"], 0) + 1
    return dict(sorted(counts.items()))
