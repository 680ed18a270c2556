"""docs/reliability.rst: every test (or test module) that its threat model and the sections
after it cite exists: a claim whose test was renamed or removed would be backed by nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_cited_test_exists() -> None:
    text = (ROOT / "docs" / "reliability.rst").read_text()
    section = text[text.index("Threat model\n") :]
    cited = set(re.findall(r"``(test_[a-z0-9_]+)``", section))
    assert len(cited) > 20, "the threat model cites its tests"
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    defined = set(re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", sources, re.MULTILINE))
    modules = {p.stem for p in (ROOT / "tests").glob("test_*.py")}  # ``test_faults``: a module
    assert sorted(cited - defined - modules) == []
