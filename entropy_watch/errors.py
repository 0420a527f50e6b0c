"""Domain exceptions. The CLI turns each into a one-line error with exit code 1 (traceback only with --debug)."""

from __future__ import annotations


class EntropyWatchError(Exception):
    """Base class: a problem the user can fix; the message says what happened and what to do."""


class InvalidRunName(EntropyWatchError, ValueError):
    """A run or project name that could escape the store or break a path (``/``, ``..``, NUL, control chars)."""


class RunNotFound(EntropyWatchError, KeyError):
    """The named run is not in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it one plain line
        return str(self.args[0]) if self.args else "run not found"


class StoreUnwritable(EntropyWatchError, OSError):
    """The store root cannot be created or written (permissions, read-only or full disk)."""


class NoEntropySeries(EntropyWatchError):
    """The run logged no entropy (yet): nothing for the detector to analyse; not a failure of the run."""


class ImportFormatError(EntropyWatchError, ValueError):
    """A log file that cannot be imported; the message names the file and the line or row."""


class InvalidTensor(EntropyWatchError, ValueError):
    """A tensor argument with the wrong shape, dtype, device or values; the message names it and what was expected."""


class ConfigError(EntropyWatchError, ValueError):
    """A training configuration value out of range; the message names the field and the allowed values."""


class MissingExtra(EntropyWatchError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none (for one-line errors)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def listed(names: object, most: int = 10) -> str:
    """Names in a one-line message: ``a, b, c``, past ``most`` the first ``most`` and how many more (``a, b and 3
    more``); ``none`` for none."""
    names = [str(n) for n in names]  # type: ignore[attr-defined]
    if not names:
        return "none"
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def runs_hint(run: str, names: list[str]) -> str:
    """``did you mean 'Y'? runs: ...`` for a run name not among ``names``: the closest stored name first, where a typo
    would otherwise be looked for among the first 10 names of a large store."""
    import difflib

    near = difflib.get_close_matches(run, names, n=1, cutoff=0.6)
    return (f"did you mean {near[0]!r}? " if near else "") + f"runs: {listed(names)}"


def run_not_found(run: str, where: object, names: list[str]) -> str:
    """``run 'X' not found in store S (did you mean 'Y'? runs: ...)``."""
    return f"run {run!r} not found in store {where} ({runs_hint(run, names)})"


def require(modules: str | tuple[str, ...], extra: str, needs: str | None = None) -> None:
    """Raise :class:`MissingExtra` naming ``pip install 'entropy-watch[extra]'`` if any of ``modules`` cannot be
    imported; ``needs`` names what needs them ("the reference trainer needs torch and transformers, and ...")."""
    names = (modules,) if isinstance(modules, str) else modules
    missing = [m for m in names if not _installed(m)]
    if not missing:
        return
    why = f"{needs} needs {' and '.join(names)}, and " if needs else ""
    verb, it = ("is", "it") if len(missing) == 1 else ("are", "them")
    raise MissingExtra(
        f"{why}{' and '.join(missing)} {verb} not installed; install {it} with: pip install 'entropy-watch[{extra}]'"
    )


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is missing; a module left half-imported
        return False
