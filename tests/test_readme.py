"""The README tells the truth about the tree and the commands.

- Its annotated file tree (``## Files``) names every module of the package (``entropy_watch/``, ``hooks/``, ``app/``;
  a package's ``__init__.py`` is implied by its folder's line) and nothing that does not exist.
- Every ``entropy-watch <command>`` that the README, the app or the package tells a user to run is a command the CLI
  has (the app's empty-store message once suggested ``entropy-watch demo``), and every option the README's command
  lines pass is one that command (or the global callback) takes.
- The catalog command runs as written on a compacted store.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SOURCE_DIRS = ("entropy_watch", "hooks", "app")
DESCRIPTION_COLUMN = 20  # a tree line whose first character is this far right continues the line above


def tree_paths() -> set[str]:
    """Paths named in the README's file tree, folders with a trailing ``/`` (``entropy_watch/store/files.py``)."""
    block = re.search(r"^## Files\n+```\n(.*?)^```", README, re.S | re.M)
    assert block, "README.md has no '## Files' code block"
    paths: set[str] = set()
    parents: list[tuple[int, str]] = []  # (indent, folder path) of the open folders
    for line in block.group(1).splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent >= DESCRIPTION_COLUMN:
            continue
        name = line.split()[0]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = (parents[-1][1] if parents else "") + name
        paths.add(path)
        if name.endswith("/"):
            parents.append((indent, path))
    return paths


def package_modules() -> set[str]:
    """Every ``.py`` file of the package, relative to the repository root (``__init__.py`` left out)."""
    return {
        p.relative_to(REPO).as_posix()
        for d in SOURCE_DIRS
        for p in (REPO / d).rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }


def test_tree_reader_nests_folders_and_skips_continuations() -> None:
    paths = tree_paths()
    assert {"entropy_watch/", "entropy_watch/store/", "entropy_watch/metrics.py", "hooks/entropy.py"} <= paths
    assert "Makefile" in paths and not any(p.startswith("bench_detectors") for p in paths)


def test_tree_names_every_module() -> None:
    missing = sorted(package_modules() - tree_paths())
    assert missing == [], f"add these to the README's file tree (one line each, what the module is for): {missing}"


def test_tree_names_only_what_exists() -> None:
    named = {p for p in tree_paths() if "." in Path(p.rstrip("/")).name or p.endswith("/")}
    gone = sorted(p for p in named if not (REPO / p).exists())
    assert gone == [], f"the README's file tree names files that do not exist: {gone}"


def _cli_commands() -> set[str]:
    import typer

    from entropy_watch.cli import app

    group = typer.main.get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


def _named_commands() -> dict[str, set[str]]:
    """Command word after ``entropy-watch`` (options and ``--store DIR`` skipped) -> files that name it."""
    texts = {"README.md": README, "Makefile": (REPO / "Makefile").read_text()}
    for d in SOURCE_DIRS:
        for p in (REPO / d).rglob("*.py"):
            texts[p.relative_to(REPO).as_posix()] = p.read_text()
    found: dict[str, set[str]] = {}
    for where, text in texts.items():
        for m in re.finditer(r"entropy-watch((?:\s+(?:--store|-s)\s+\S+|\s+--\w[\w-]*)*)\s+([a-z][a-z-]+)\b", text):
            found.setdefault(m.group(2), set()).add(where)
    return found


def test_every_command_a_user_is_told_to_run_exists() -> None:
    commands = _cli_commands()
    named = _named_commands()
    assert "alerts" in named and "train" in named  # the reader finds the README's commands
    unknown = {cmd: sorted(where) for cmd, where in named.items() if cmd not in commands}
    assert unknown == {}, f"commands that do not exist (have: {sorted(commands)})"


def test_readme_catalog_command_runs_as_written(tmp_path: Path) -> None:
    from entropy_watch.synthetic import write_to_store

    line = next(ln for ln in README.splitlines() if "_catalog.duckdb" in ln and ln.startswith("python -c"))
    argv = shlex.split(line.split("  #")[0])
    write_to_store(tmp_path / "ew_runs", "grpo-s0", "steady_collapse", seed=1, n_steps=50)
    compact = [sys.executable, "-m", "entropy_watch", "compact"]  # as the README runs it, from the store's parent
    r = subprocess.run(compact, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "grpo-s0" in r.stdout


def _options(cmd: object) -> set[str]:
    """Every spelling of every option of a click command (``--x``, ``-x``, ``--no-x``)."""
    return {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", ()))}  # type: ignore[attr-defined]


def test_every_option_the_readme_passes_exists() -> None:
    import typer

    from entropy_watch.cli import app

    group = typer.main.get_command(app)
    global_opts = _options(group)
    lines = [ln for ln in README.splitlines() if ln.startswith("entropy-watch ")]
    assert len(lines) >= 10 and any("--epochs" in ln for ln in lines)  # the reader finds the command lines
    wrong: list[str] = []
    for line in lines:
        words = shlex.split(line.split("  #")[0].split(" # ")[0])[1:]
        while words and words[0] in global_opts:  # entropy-watch --store DIR <command>
            words = words[2:]
        cmd = group.commands[words[0]]  # type: ignore[attr-defined]
        given = {w.split("=")[0] for w in words[1:] if w.startswith("-") and w != "-"}
        wrong += [f"{words[0]} {o}" for o in sorted(given - _options(cmd))]
    assert wrong == [], "options the README passes that the command does not take"


def _install_section() -> str:
    block = re.search(r"^## Install\n(.*?)^## ", README, re.S | re.M)
    assert block, "README.md has no '## Install' section (what `pip install -e .` gives, and each extra)"
    return block.group(1)


def test_install_section_names_every_extra_a_user_installs() -> None:
    import tomllib

    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    rows = [ln for ln in _install_section().splitlines() if ln.startswith("| `")]
    named = {e for ln in rows for e in re.findall(r"`([a-z0-9]+)`", ln.split("|")[1])}
    assert named == extras - {"dev", "spark"}, "the Install table's extras differ from pyproject.toml's"


def test_install_section_places_every_command() -> None:
    """Each command is either in the core sentence or in an extra's row: a new command needs a line there."""
    section = _install_section()
    core, _, table = section.partition("| extra |")
    in_core = set(re.findall(r"`([a-z]+)`", core.split("gives the core", 1)[1].split("(")[0]))
    in_extras = set(re.findall(r"entropy-watch ([a-z]+)", table)) | set(re.findall(r"and `([a-z]+)`", table))
    commands = _cli_commands()
    assert in_core | in_extras == commands, f"not placed: {sorted(commands - in_core - in_extras)}"
    assert not in_core & in_extras, sorted(in_core & in_extras)


def _setup_extras() -> tuple[set[str], set[str]]:
    """(every extra in pyproject.toml, the extras `make setup` installs: its `-e ".[...]"`, with what they name)."""
    import tomllib

    extras: dict[str, list[str]] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    todo = [e for m in re.findall(r'-e "\.\[([\w,]+)\]"', recipe) for e in m.split(",")]
    installed: set[str] = set()
    while todo:
        extra = todo.pop()
        if extra not in installed:
            installed.add(extra)
            for req in extras.get(extra, []):
                m = re.match(r"entropy-watch\[([\w,]+)\]", req)
                todo += m.group(1).split(",") if m else []
    return set(extras), installed


def test_install_says_which_extras_make_setup_leaves_out() -> None:
    """`make setup` installs `.[dev]`: the README said "all extras", but `spark` (CI's Spark test) is not in it."""
    every, installed = _setup_extras()
    assert {"dev", "torch", "app"} <= installed
    sentence = _install_section().split("`make setup` installs", 1)[1].split(" into `.venv`", 1)[0]
    left_out = sorted(every - installed)
    assert "all extras" not in sentence or not left_out
    assert [e for e in left_out if f"`{e}`" not in sentence] == [], f"say that `make setup` leaves out {left_out}"
