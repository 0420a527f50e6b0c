"""The trainer's configuration refuses values it cannot train on, naming the field and the value: NaN and inf
where a number must be finite (``eps_high`` may be inf: the no-upper-clip baseline)."""

from __future__ import annotations

import math
import re

import pytest

from entropy_watch.errors import ConfigError
from entropy_watch.trainer.config import AlgoConfig, RLConfig, SFTConfig, preset


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("field", ["zeta0", "zeta_min", "zeta_max"])
def test_zeta_bounds_must_be_finite(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"{field}={value!r}"):
        AlgoConfig(**{field: value})


def test_repo_r_with_an_infinite_zeta_max_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"zeta_max=inf; each must be finite"):
        preset("tiny", "repo-r", zeta_max=math.inf)


def test_zeta_order_names_the_values() -> None:
    with pytest.raises(ConfigError, match=r"zeta_min=0\.0001, zeta_max=1e-05; need 0 < zeta_min <= zeta_max"):
        preset("tiny", "repo-r", zeta_max=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"lr": math.nan}, "lr=nan; use a finite number > 0"),
        ({"lr": math.inf}, "lr=inf; use a finite number > 0"),
        ({"temperature": math.inf}, "temperature=inf"),
        ({"grad_clip": math.nan}, "grad_clip=nan"),
        ({"grad_clip": math.inf}, "grad_clip=inf"),
        ({"minibatches": 3}, "minibatches=3 must divide prompts*group_size=64"),
    ],
)
def test_rl_values_are_refused_by_name(kwargs: dict, said: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        RLConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"entropy_coef": math.inf}, {"kl_coef": math.nan}, {"target_entropy": math.inf}])
def test_other_algorithm_numbers_must_be_finite(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        AlgoConfig(**kwargs)


def test_sft_lr_must_be_finite() -> None:
    with pytest.raises(ConfigError, match="SFT lr=inf"):
        SFTConfig(lr=math.inf)


def test_the_no_upper_clip_baseline_keeps_its_infinite_eps_high() -> None:
    assert preset("tiny", "no-upper-clip").algo_cfg.eps_high == math.inf


def test_a_zeta_cap_below_the_start_lowers_the_start() -> None:
    """``--zeta-max 5e-4`` for REPO-R (zeta0 = 1e-3) ran at zeta = 1e-3, twice the cap, until the controller first
    moved (the first iteration never moves it: its entropy is the target)."""
    for algo, cap in (("repo-r", 5e-4), ("repo-d", 0.5), ("repo-r", 0.25)):
        a = preset("tiny", algo, zeta_max=cap).algo_cfg
        assert a.zeta_min <= abs(a.zeta0) <= a.zeta_max == cap, (algo, a.zeta0)
    assert preset("tiny", "repo-r", zeta_max=0.25).algo_cfg.zeta0 == 1e-3  # a cap above the start leaves it


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"repo": "r", "zeta0": 1.0}, "need zeta_min <= |zeta0| <= zeta_max"),
        ({"repo": "r", "zeta0": 1e-5}, "need zeta_min <= |zeta0| <= zeta_max"),
        ({"controller": "adapo", "eps_high": 0.28, "adapo_eps_max": 0.25}, "eps_high=0.28 is ADAPO's start"),
        ({"controller": "adapo", "eps_high": 0.1}, "eps_high=0.1 is ADAPO's start"),
    ],
)
def test_controller_starts_outside_their_bounds_are_refused(kwargs: dict, said: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        AlgoConfig(**kwargs)
    AlgoConfig(repo="r", zeta0=-1e-3)  # a negative start within the bounds is fine
