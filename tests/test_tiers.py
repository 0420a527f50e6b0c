"""Dependency tiers (STYLE.md): the core imports without torch and streamlit; `entropy-watch --help` too.

Besides importing modules in a subprocess, the source is read with ``ast``, so imports inside functions count too:
which tier may import which, that only ``entropy_watch/store/`` talks to DuckDB, and that no two modules import each
other (a cycle hidden inside a function is still a cycle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CORE_MODULES = [
    "entropy_watch",
    "entropy_watch.metrics",
    "entropy_watch.histogram",
    "entropy_watch.recorder",
    "entropy_watch.store",
    "entropy_watch.importers",
    "entropy_watch.analysis",
    "entropy_watch.cli",
]

# Source folder -> installed package (pyproject's package-dir).
PACKAGE_DIRS = {"entropy_watch": "entropy_watch", "hooks": "entropy_watch.hooks", "app": "entropy_watch.app"}
HOOKS, APP, TRAINER = "entropy_watch.hooks", "entropy_watch.app", "entropy_watch.trainer"
IMPORTERS, STORE = "entropy_watch.importers", "entropy_watch.store"

# Imports across tiers that are the tier's front door, each inside the function that needs it.
DOORWAYS = {
    ("entropy_watch.cli.train_cmds", TRAINER): "`entropy-watch train` / `compare` run the reference trainer (torch)",
}


def _modules() -> dict[str, Path]:
    """Every module of the installed package -> its source file."""
    out: dict[str, Path] = {}
    for folder, package in PACKAGE_DIRS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers of statements under ``if TYPE_CHECKING:`` (never run, so not part of the import graph)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, runs)`` for every import statement in the file, at any depth (functions too).

    ``from X import Y`` names the module ``X.Y`` when that is a module, else ``X``; relative imports are resolved.
    ``runs`` is False for imports under ``if TYPE_CHECKING:``.
    """
    tree = ast.parse(path.read_text(), str(path))
    typing_only = _type_checking_lines(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, node.lineno not in typing_only) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.append((name if name in MODULES else base, node.lineno, node.lineno not in typing_only))
    return found


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _violations(importer_in: list[str], imported_in: list[str], exempt: tuple[str, ...] = ()) -> list[str]:
    """``module:line -> imported`` for modules under ``importer_in`` importing anything under ``imported_in``."""
    bad = []
    for module, path in MODULES.items():
        if not any(_under(module, p) for p in importer_in) or any(_under(module, p) for p in exempt):
            continue
        for name, line, _ in _imports(module, path):
            hit = next((p for p in imported_in if _under(name, p)), None)
            if hit and (module, hit) not in DOORWAYS:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    return bad


def test_core_never_imports_hooks_app_or_trainer() -> None:
    assert _violations(["entropy_watch"], [HOOKS, APP, TRAINER], exempt=(HOOKS, APP, TRAINER)) == []


def test_hooks_import_neither_importers_app_nor_trainer() -> None:
    assert _violations([HOOKS], [IMPORTERS, APP, TRAINER]) == []


def test_app_imports_neither_hooks_nor_trainer_and_trainer_not_the_app() -> None:
    assert _violations([APP], [HOOKS, TRAINER]) == []
    assert _violations([TRAINER], [APP]) == []


def test_only_the_store_imports_duckdb() -> None:
    assert _violations(["entropy_watch"], ["duckdb"], exempt=(STORE,)) == []


def _cycles() -> list[frozenset[str]]:
    graph = {
        m: {name for name, _, runs in _imports(m, p) if runs and name in MODULES and name != m}
        for m, p in MODULES.items()
    }
    return [frozenset(c) for c in _strongly_connected(graph)]


def test_no_import_cycles() -> None:
    cycles = _cycles()
    assert cycles == [], "modules that import each other (directly or through others): " + "; ".join(
        " <-> ".join(sorted(c)) for c in cycles
    )


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(comp)
    return found


def test_the_import_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The checks above would miss nothing that is hidden in a function or written relative."""
    src = tmp_path / "mod.py"
    src.write_text(
        "import os\n"
        "def f():\n    from entropy_watch.hooks import stats\n    import duckdb\n"
        "class C:\n    def g(self):\n        from . import metrics\n"
    )
    names = {name for name, _, _ in _imports("entropy_watch.x", src)}
    assert {"os", "entropy_watch.hooks.stats", "duckdb", "entropy_watch.metrics"} <= names
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return set(out.stdout.split())


def test_core_imports_without_torch_or_streamlit() -> None:
    loaded = _loaded_after("\n".join(f"import {m}" for m in CORE_MODULES))
    assert "torch" not in loaded
    assert "streamlit" not in loaded
    assert "plotly" not in loaded


def test_cli_help_imports_neither_torch_nor_streamlit() -> None:
    code = (
        "import sys\nfrom entropy_watch.cli import app\nimport typer.testing\n"
        "r = typer.testing.CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output"
    )
    loaded = _loaded_after(code)
    assert "torch" not in loaded and "streamlit" not in loaded


def test_console_script_and_module_entry_point() -> None:
    r = subprocess.run([sys.executable, "-m", "entropy_watch", "--version"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.startswith("entropy-watch ")
    exe = Path(sys.executable).with_name("entropy-watch")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage" in r.stdout


def test_import_hooks_from_repo_root_names_the_right_import() -> None:
    r = subprocess.run([sys.executable, "-c", "import hooks"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0
    assert "entropy_watch.hooks" in r.stderr


def test_py_typed_is_shipped() -> None:
    import entropy_watch

    assert (Path(entropy_watch.__file__).parent / "py.typed").exists()
