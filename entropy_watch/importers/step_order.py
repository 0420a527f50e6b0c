"""Rules on a log's steps in the order they were written (int64 arrays, no file format): a step back is a restart
unless the rows are out of order, what a restart replaced, a step out of line with its neighbours (a typo such as
``1e15`` among steps 30 and 31). One rule for every format: the row readers (:mod:`~entropy_watch.importers.base`)
and TensorBoard (:mod:`~entropy_watch.importers.tensorboard`) use them alike.
"""

from __future__ import annotations

import numpy as np

from entropy_watch import aliases as A
from entropy_watch import metrics as M

UNORDERED_SHARE = 0.25  # past this share of rows stepping back, a file's rows are out of order, not restarts


def step_backs(s: np.ndarray) -> np.ndarray:
    """Positions ``i`` in ``s`` (steps in write order, int64) where the step is *lower* than the one before: a
    restart each, unless the rows are out of order (:func:`unordered`). A repeated step is no step back (an HF
    Trainer logs ``epoch`` in its training and its evaluation entry at one step; two ranks write the same step)."""
    return np.flatnonzero(s[1:] < s[:-1]) + 1


def unordered(s: np.ndarray) -> bool:
    """Whether steps in write order ``s`` are out of order rather than restarted: more than ``UNORDERED_SHARE`` of
    them step back (a file sorted newest first or shuffled, two writers interleaved). The one rule for every format:
    such rows are read in step order and no restart is recorded (each would be a ``resume`` event, which explains
    any jump of entropy near it)."""
    back = len(step_backs(s))
    return back > 1 and back > UNORDERED_SHARE * (len(s) - 1)


Marks = tuple[np.ndarray, np.ndarray]  # restarts: (when each was written, the step it went back to)


def restarts(s: np.ndarray, when: np.ndarray) -> Marks:
    """The restarts among steps ``s`` written at ``when`` (write order: a row's position, or a TensorBoard point's
    wall time): each step back (:func:`step_backs`), none when the steps are out of order (:func:`unordered`)."""
    back = np.zeros(0, dtype=np.int64) if unordered(s) else step_backs(s)
    return np.asarray(when)[back], s[back]


def restarts_judged_on(counts: dict[str, int], given: str | None = None) -> str:
    """The series a tracker's restarts are judged on, by its name -> point count: ``given`` (``--map entropy=``) when
    it is one, else the entropy the aliases find, else the busiest (a series logged less often steps back at other
    points, so one judges for all)."""
    if given in counts:
        return given
    return A.detect_canonical(counts).get(M.ENTROPY_MEAN) or max(counts, key=lambda k: counts[k])


def replaced_by(marks: Marks, s: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Which points (steps ``s`` written at ``when``) the restarts ``marks`` replaced (bool, shape of ``s``): those
    written before a restart, at or past the step it went back to. The resumed training went on from its checkpoint,
    so what was logged from that step on before it is a trajectory the run no longer has — kept, it reads after the
    resumed points that stop short of it (a run resumed at step 5 and logged to 7 read 5–7 resumed, then 8–10 from
    before). TensorBoard drops such points too (``purge_orphaned_data``, on by default)."""
    at, step = marks
    if not len(at):
        return np.zeros(len(s), dtype=bool)
    order = np.argsort(at, kind="stable")
    lowest = np.minimum.accumulate(step[order][::-1])[::-1]  # the lowest step of the restarts from each one on
    first_after = np.searchsorted(at[order], when, side="right")  # the first restart written after each point
    return s >= np.append(lowest, np.iinfo(np.int64).max)[first_after]


def orphaned(s: np.ndarray) -> np.ndarray:
    """:func:`replaced_by` for the rows of one table in write order ``s`` (steps, int64), by its own restarts."""
    pos = np.arange(len(s))
    return replaced_by(restarts(s, pos), s, pos)


LAST_JUMP = 1000  # a last step this many times further than the largest step before it is out of line


def out_of_line(s: np.ndarray) -> np.ndarray:
    """Positions in ``s`` (steps in write order) of steps out of line with both neighbours: the steps before and
    after climb (``prev < next``) while this one sits above the next or below the previous — a typo or a corrupt
    cell such as ``1e15`` among steps 30, 31, not a restart (a restart climbs on from where it stepped back to).
    None when ``s`` is out of order (:func:`unordered`). The last step, which has no next one, is out of line when it
    jumps :data:`LAST_JUMP` times further than any step before it did and past ten times the step before it (a
    stray ``1e18`` on the last row made the run end at step 10^18 and forecast its floor at step 1.9·10^18)."""
    if len(s) < 3 or unordered(s):
        return np.zeros(0, dtype=np.int64)
    prev, cur, nxt = s[:-2], s[1:-1], s[2:]
    odd = np.flatnonzero((prev < nxt) & ((cur > nxt) | (cur < prev))) + 1
    gaps = np.diff(s[:-1])
    jump = int(s[-1]) - int(s[-2])
    if jump > LAST_JUMP * max(int(gaps.max()), 1) and s[-1] > 10 * max(int(s[-2]), 1):
        odd = np.append(odd, len(s) - 1)
    return odd


def out_of_line_text(s: np.ndarray, i: int) -> str:
    """Where step ``s[i]`` (:func:`out_of_line`) sits: "step 1000000000000000000 between steps 31 and 32", or for the
    last one "... after step 59, the last, far past every step before it"."""
    if i + 1 < len(s):
        return f"step {int(s[i])} between steps {int(s[i - 1])} and {int(s[i + 1])}"
    return f"step {int(s[i])} after step {int(s[i - 1])}, the last, far past every step before it"


def replaced_note(s: np.ndarray, replaced: np.ndarray, what: str = "row") -> str:
    """What restarts left out of steps ``s`` (``replaced``: :func:`orphaned`), for the run's notes."""
    n = int(replaced.sum())
    again = int(np.isin(s[replaced], s[~replaced]).sum())
    gone = f", {n - again} at steps it did not log again" if n > again else ""
    return (
        f"{n} {what}(s) logged before it at or past the step it went back to are left out, replaced by the resumed "
        f"training ({again} logged again{gone})"
    )
