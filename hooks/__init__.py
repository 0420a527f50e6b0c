"""entropy_watch.hooks: torch-side token statistics, the background recorder, ``Watch`` and trainer adapters.

This folder is installed as ``entropy_watch.hooks`` (a setuptools ``package-dir`` mapping). Import it by that name::

    from entropy_watch.hooks import token_entropy, Watch
"""

from __future__ import annotations

if __name__ != "entropy_watch.hooks":  # e.g. `import hooks` from the repository root
    raise ImportError(
        "the hooks folder is the package 'entropy_watch.hooks'; use `from entropy_watch.hooks import Watch` "
        "after `pip install -e '.[torch]'`"
    )

from typing import TYPE_CHECKING, Any

from entropy_watch.errors import require

require("torch", "torch", needs="entropy_watch.hooks")  # one line naming the extra, not a bare ModuleNotFoundError

__all__ = ["token_entropy", "step_stats", "Watch"]

if TYPE_CHECKING:  # pragma: no cover
    from entropy_watch.hooks.entropy import token_entropy
    from entropy_watch.hooks.stats import step_stats
    from entropy_watch.hooks.watch import Watch


def __getattr__(name: str) -> Any:  # lazy, so `import entropy_watch.hooks.trl` does not pull everything
    if name == "token_entropy":
        from entropy_watch.hooks.entropy import token_entropy

        return token_entropy
    if name == "step_stats":
        from entropy_watch.hooks.stats import step_stats

        return step_stats
    if name == "Watch":
        from entropy_watch.hooks.watch import Watch

        return Watch
    raise AttributeError(name)
