"""Seeded synthetic verifiable tasks with many correct answers per prompt.

Task A, ``sum3`` (ALGORITHMS.md scale notes): prompt ``S=ss>`` (S in 0..27, two digits), answer ``a+b+c`` with
digits summing to S; up to 75 correct answers per prompt (S = 13, 14), so diversity and pass@k are measurable.
Task B, ``sum3sorted``, the sequential-learning probe: the same prompts, but only non-decreasing answers
(a <= b <= c) are rewarded. A policy that collapsed onto one answer per prompt during task A gets an all-zero group
wherever that answer is unsorted, hence no gradient; a diverse one keeps finding sorted answers (our choice of
probe; the paper's second environments are not public).

Rewards are binary (1.0 correct, 0.0 otherwise) on the decoded completion text. A digit may be written in any
numeral script the tokenizer knows (``tokenizer.NUMERAL_SCRIPTS``: ``3``, ``３``, ``٣``, ``३`` are the same digit): the
reward reads its value, and distinct answers are counted by value (:func:`canonical`), so a synonym is never a new
answer. The warm-up data writes each digit in script k with probability proportional to ``(k + 1) ** -zipf``
(:func:`script_weights`): like an LLM's vocabulary, a few tokens carry most of the mass and a long tail is rare.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from entropy_watch.errors import ConfigError
from entropy_watch.trainer.tokenizer import PLUS_SIGNS, answer_characters, script_digits

MAX_SUM = 27
_PLUS = f"[{re.escape(PLUS_SIGNS)}]"
# \d: any Unicode decimal digit (Nd); the separator: any of PLUS_SIGNS
_ANSWER = re.compile(rf"^\s*(\d)\s*{_PLUS}\s*(\d)\s*{_PLUS}\s*(\d)\s*$")


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


def canonical(text: str) -> str:
    """``text`` with digits in ASCII, plus signs as ``+`` and no whitespace: ``"٣ ＋ ३+3"`` -> ``"3+3+3"``."""
    return "".join(_canonical_char(c) for c in text if not c.isspace())


def _canonical_char(c: str) -> str:
    if unicodedata.category(c) == "Nd":
        return str(unicodedata.decimal(c))
    return "+" if c in PLUS_SIGNS else c


def distinct_correct(task: Task, target: int, completions: list[str]) -> int:
    """Number of distinct correct answers among ``completions``, by value (:func:`canonical`: synonyms are one)."""
    return len({canonical(c) for c in completions if task.reward(target, c) > 0})


def script_weights(scripts: int, zipf: float) -> np.ndarray:
    """``(scripts,)`` probabilities of writing a digit in script k: proportional to ``(k + 1) ** -zipf``."""
    w = np.arange(1, scripts + 1, dtype=float) ** -zipf
    return w / w.sum()


@dataclass(frozen=True)
class Surface:
    """How answers are written: ``scripts`` numeral scripts (``tokenizer.NUMERAL_SCRIPTS``) and ``plus_signs`` signs
    for ``+`` (``tokenizer.PLUS_SIGNS``) in the vocabulary, and ``zipf``, the exponent of their use in the warm-up
    data (:func:`script_weights`). ``Surface()`` is plain ASCII."""

    scripts: int = 1
    plus_signs: int = 1
    zipf: float = 1.0

    def characters(self) -> str:
        """Every character an answer may use: the digits of each script, then the plus signs."""
        return answer_characters(self.scripts, self.plus_signs)


ASCII = Surface()


def sft_examples(task: Task, rng: np.random.Generator, n: int, surface: Surface = ASCII) -> list[tuple[str, str]]:
    """``n`` (prompt, answer) pairs: a uniform target, then a correct answer drawn uniformly among its answers, each
    digit written in a numeral script and each ``+`` as a plus sign drawn independently from :func:`script_weights`
    (plain ASCII draws nothing more, so its examples are those of a 15-token vocabulary)."""
    out = []
    digit_w, plus_w = script_weights(surface.scripts, surface.zipf), script_weights(surface.plus_signs, surface.zipf)
    tables = [script_digits(k) for k in range(surface.scripts)]
    for s in task.sample_targets(rng, n):
        answers = _answers(task.accepts, s)
        answer = answers[int(rng.integers(len(answers)))]
        if surface.scripts > 1:
            picks = iter(rng.choice(surface.scripts, size=3, p=digit_w))
            answer = "".join(tables[int(next(picks))][int(c)] if c.isdigit() else c for c in answer)
        if surface.plus_signs > 1:
            signs = iter(rng.choice(surface.plus_signs, size=2, p=plus_w))
            answer = "".join(PLUS_SIGNS[int(next(signs))] if c == "+" else c for c in answer)
        out.append((task.prompt(s), answer))
    return out
