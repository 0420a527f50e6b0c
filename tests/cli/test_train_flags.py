"""``entropy-watch train``/``compare``: a bad flag value is a usage error (exit 2, typer's usage message) naming the
flag and the value, refused before anything trains; NaN and inf are refused where a number must be finite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BAD = [
    (["train", "--algo", "foo"], "'--algo'", "unknown algorithm 'foo'; use one of grpo, dr-grpo"),
    (["train", "--precision", "foo"], "'--precision'", "unknown precision 'foo'; use one of fp32, bf16"),
    (["train", "--task", "foo"], "'--task'", "unknown task 'foo'; use one of sum3, sum3sorted"),
    (["train", "--preset", "big"], "'--preset'", "unknown preset 'big'; use one of tiny, gpu"),
    (["train", "--device", "foo"], "'--device'", "'foo'; use auto, cpu, cuda or cuda:N"),
    (["train", "--zeta-max", "nan"], "'--zeta-max'", "nan; use a finite number > 0"),
    (["train", "--algo", "repo-r", "--zeta-max", "inf"], "'--zeta-max'", "inf; use a finite number > 0"),
    (["train", "--algo", "repo-r", "--zeta-max", "1e-5"], "'--zeta-max'", "1e-05 (zeta0=0.001, zeta_min=0.0001"),
    (["train", "--algo", "adapo", "--eps-max", "inf"], "'--eps-max'", "inf; use a finite number > 0"),
    (["train", "--algo", "adapo", "--eps-max", "0.25"], "'--eps-max'", "0.25 (eps_high=0.28 is ADAPO's start"),
    (["train", "--lr", "nan"], "'--lr'", "nan; use a finite number > 0"),
    (["train", "--lr", "-1e-4"], "'--lr'", "-0.0001 is not a positive number"),
    (["compare", "--lr", "nan"], "'--lr'", "nan; use a finite number > 0"),
    (["compare", "--lr", "inf"], "'--lr'", "inf; use a finite number > 0"),
    (["compare", "--minibatches", "3"], "'--minibatches'", "3 (minibatches=3 must divide prompts*group_size=64)"),
    (["compare", "--algos", "grpo,foo"], "'--algos'", "unknown algorithm 'foo'"),
    (["compare", "--preset", "big"], "'--preset'", "unknown preset 'big'"),
    (["compare", "--seeds", "a,b"], "'--seeds'", "'a,b'; use comma-separated integers >= 0"),
]


def _flat(text: str) -> str:
    """The usage message without the box typer draws around it, wrapped lines joined."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize(("argv", "flag", "said"), BAD, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_a_bad_value_is_a_usage_error_naming_flag_and_value(
    ew, tmp_path: Path, argv: list[str], flag: str, said: str
) -> None:
    r = ew("--store", tmp_path, *argv, "--steps", "1", "--sft-steps", "1")
    err = _flat(r.err)
    assert r.code == 2, (r.code, r.err)
    assert "Usage:" in err and f"Invalid value for {flag}" in err and said in err, err
    assert "internal error" not in err and not any(tmp_path.iterdir()), "refused before anything was written"
