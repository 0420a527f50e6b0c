"""Seeded synthetic verifiable tasks with many correct answers per prompt.

Task A, ``sum3`` (ALGORITHMS.md scale notes): prompt ``S=ss>`` (S in 0..27, two digits), answer ``a+b+c`` with
digits summing to S; up to 75 correct answers per prompt (S = 13, 14), so diversity and pass@k are measurable.
Task B, ``sum3sorted``, the sequential-learning probe: the same prompts, but only non-decreasing answers
(a <= b <= c) are rewarded. A policy that collapsed onto one answer per prompt during task A gets an all-zero group
wherever that answer is unsorted, hence no gradient; a diverse one keeps finding sorted answers (our choice of
probe; the paper's second environments are not public).

Rewards are binary (1.0 correct, 0.0 otherwise) on the decoded completion text.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from entropy_watch.errors import ConfigError

MAX_SUM = 27
_ANSWER = re.compile(r"^\s*(\d)\s*\+\s*(\d)\s*\+\s*(\d)\s*$")


@dataclass(frozen=True)
class Task:
    """A task family: how prompts look and which answers are correct. Pure functions, no state."""

    name: str
    accepts: Callable[[int, int, int, int], bool]
    """(S, a, b, c) -> correct?"""
    description: str

    def prompt(self, target: int) -> str:
        """The prompt text for target sum ``target``, e.g. ``S=07>``."""
        return f"S={target:02d}>"

    def sample_targets(self, rng: np.random.Generator, n: int) -> list[int]:
        """``n`` targets drawn uniformly from 0..27."""
        return [int(s) for s in rng.integers(0, MAX_SUM + 1, size=n)]

    def correct_answers(self, target: int) -> list[str]:
        """Every correct answer text for ``target`` (e.g. 75 for S = 13 in ``sum3``)."""
        return list(_answers(self.accepts, target))

    def reward(self, target: int, completion: str) -> float:
        """1.0 if the completion (end token stripped) is a correct answer, else 0.0."""
        m = _ANSWER.match(completion)
        return float(m is not None and self.accepts(target, *(int(g) for g in m.groups())))


@functools.lru_cache(maxsize=256)
def _answers(accepts: Callable[[int, int, int, int], bool], target: int) -> tuple[str, ...]:
    return tuple(f"{a}+{b}+{c}" for a, b, c in itertools.product(range(10), repeat=3) if accepts(target, a, b, c))


def _sum3(s: int, a: int, b: int, c: int) -> bool:
    return a + b + c == s


def _sum3sorted(s: int, a: int, b: int, c: int) -> bool:
    return a + b + c == s and a <= b <= c


TASKS: dict[str, Task] = {
    "sum3": Task("sum3", _sum3, "three digits that sum to S"),
    "sum3sorted": Task("sum3sorted", _sum3sorted, "three non-decreasing digits that sum to S"),
}


def get_task(name: str) -> Task:
    """The task called ``name`` (see :data:`TASKS`)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; use one of {', '.join(TASKS)}")
    return TASKS[name]


def distinct_correct(task: Task, target: int, completions: list[str]) -> int:
    """Number of distinct correct answers among ``completions`` (whitespace-normalised)."""
    return len({c.replace(" ", "").strip() for c in completions if task.reward(target, c) > 0})


def sft_examples(task: Task, rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """``n`` (prompt, answer) pairs: a uniform target, then a correct answer drawn uniformly among its answers."""
    out = []
    for s in task.sample_targets(rng, n):
        answers = _answers(task.accepts, s)
        out.append((task.prompt(s), answers[int(rng.integers(len(answers)))]))
    return out
