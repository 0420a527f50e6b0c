"""The docs say what the code does, where an audit found they did not.

- docs/CONTRACTS.md's list of ``load_log`` formats is ``importers.FORMATS`` (it lacked ``trl-console``).
- Every ``ENTROPY_WATCH_*`` variable the package reads is named in README.md or docs/ (verl's ``ew_repo_r`` read
  ``ENTROPY_WATCH_REPO_ZETA_MAX`` and ``ENTROPY_WATCH_TARGET_ENTROPY``, and the verl/OpenRLHF hooks
  ``ENTROPY_WATCH_STRICT``, documented nowhere).
- The run metadata file is named as the store writes it (``_run.json``; the docs said ``run.json``, the name of stores
  written before, which only the legacy sentence may use).
- docs/papers.md states the TRL controller's default cadence (it said once per optimizer step; the default is once per
  TRL iteration, ``ControlConfig.every=None``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
DOCS = {p.relative_to(REPO).as_posix(): p.read_text() for p in DOC_FILES}
SOURCE_DIRS = ("entropy_watch", "hooks", "app")


def contracts_formats(text: str) -> list[str]:
    """The formats CONTRACTS.md's ``load_log`` block lists after ``# fmt:`` (up to ``(None: detected)``)."""
    m = re.search(r"# fmt: (?:one of importers\.FORMATS: )?(.*?)\(None: detected\)", text, re.S)
    assert m, "docs/CONTRACTS.md: load_log's '# fmt: ... (None: detected)' line is gone"
    return [f.strip() for f in m.group(1).replace("#", " ").split("|")]


def test_contracts_lists_every_import_format() -> None:
    from entropy_watch.importers import FORMATS

    assert contracts_formats(DOCS["docs/CONTRACTS.md"]) == list(FORMATS)


def undocumented_env_vars(docs: dict[str, str]) -> list[str]:
    """``ENTROPY_WATCH_*`` names in the package's source that no doc names."""
    used = {
        name
        for d in SOURCE_DIRS
        for p in (REPO / d).rglob("*.py")
        for name in re.findall(r"\bENTROPY_WATCH_[A-Z0-9_]*[A-Z0-9]\b", p.read_text())
    }
    text = "\n".join(docs.values())
    return sorted(n for n in used if not re.search(rf"\b{n}\b", text))


def test_every_environment_variable_the_package_reads_is_documented() -> None:
    assert "ENTROPY_WATCH_DIR" in "\n".join(DOCS.values())  # the reader finds the documented ones
    assert undocumented_env_vars(DOCS) == []


def bare_run_json(docs: dict[str, str]) -> list[str]:
    """Lines naming the metadata file ``run.json`` (not ``_run.json``), but for the one about older stores."""
    return [
        f"{where}: {line.strip()}"
        for where, text in docs.items()
        for line in text.splitlines()
        if re.search(r"(?<![\w/_.])run\.json", line) and "still read" not in line
    ]


def test_docs_name_the_run_metadata_file_as_the_store_writes_it() -> None:
    from entropy_watch.store import layout

    assert layout.RUN_JSON == "_run.json" and layout.LEGACY_RUN_JSON == "run.json"
    assert bare_run_json(DOCS) == []


def papers_control_row(text: str) -> str:
    row = next((ln for ln in text.splitlines() if ln.startswith("| `attach(trainer, control=...)`")), None)
    assert row, "docs/papers.md has no row for attach(trainer, control=...)"
    return row


def test_papers_states_the_trl_controllers_default_cadence() -> None:
    pytest.importorskip("torch")
    from entropy_watch.hooks.control import ControlConfig

    row = papers_control_row(DOCS["docs/papers.md"])
    assert ControlConfig().every is None  # None: one update per TRL iteration (control.iteration_steps)
    assert "once per TRL iteration" in row and "per optimizer step" not in row
    assert f"first {ControlConfig().ref_steps} updates" in row
