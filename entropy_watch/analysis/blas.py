"""One BLAS thread while an analysis runs: its matrices are small (a forecast's 200 resamples × 200 points × 40 rates),
and numpy's OpenBLAS splits each product over every core, then waits for the slowest thread. On a machine whose
cores are busy (a training beside it, a cron job's neighbours) that wait is most of the product: a 5,000-point
analysis took 1.06 s with the default threads and 0.65 s with one (2 busy cores), answers bit for bit the same
(OpenBLAS splits a product over its rows and columns, never its sums).

:func:`single_threaded` sets numpy's own OpenBLAS (found by threadpoolctl: the wheel's bundled one, or a
system OpenBLAS numpy links to) to one thread and restores the count when the last analysis inside it ends (nested
and concurrent analyses share one count). Torch and other libraries bundle their own BLAS and are not touched.
Where no OpenBLAS is found (MKL, Accelerate) it does nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

_lock = threading.Lock()
_depth = 0
_saved = 0
_calls: tuple[Callable[[], int], Callable[[int], None]] | None | bool = False  # False: not looked up yet


def _lookup() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """numpy's OpenBLAS thread count (get, set) through threadpoolctl (the loaded BLAS libraries, as scikit-learn
    finds them): the wheel's bundled ``numpy.libs`` OpenBLAS, else every OpenBLAS loaded (a system numpy linked to a
    system OpenBLAS); None where none is (MKL, Accelerate)."""
    from threadpoolctl import ThreadpoolController

    found = [c for c in ThreadpoolController().lib_controllers if c.internal_api == "openblas"]
    bundled = os.path.realpath(os.path.dirname(np.__file__)) + ".libs" + os.sep
    libs = [c for c in found if os.path.realpath(c.filepath).startswith(bundled)] or found
    if not libs:
        return None

    def put(n: int) -> None:
        for c in libs:
            c.set_num_threads(n)

    return (lambda: max(int(c.get_num_threads()) for c in libs)), put


def _functions() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    global _calls
    if _calls is False:
        try:
            _calls = _lookup()
        except Exception:  # never let a BLAS lookup stop an analysis
            _calls = None
    return _calls if _calls else None


@contextmanager
def single_threaded() -> Iterator[None]:
    """numpy's OpenBLAS on one thread inside the block (restored after the last block still open ends)."""
    global _depth, _saved
    calls = _functions()
    if calls is None:
        yield
        return
    get, put = calls
    with _lock:
        if _depth == 0:
            _saved = int(get())
            if _saved > 1:
                put(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved > 1:
                put(_saved)
