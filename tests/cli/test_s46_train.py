"""``entropy-watch train``/``compare``: what would refuse a run is said before any work, in one line, with no progress
bar drawn first; flags the trainer would silently ignore, and a repeated algorithm or seed, are usage errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from entropy_watch.store.layout import run_dir

FAST = ("--steps", "2", "--sft-steps", "0", "--device", "cpu")


def _flat(text: str) -> str:
    """The usage message without the box typer draws around it, wrapped lines joined."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _refused_at_once(r, said: str) -> None:
    """Exit 1, one ``error:`` line naming the cause, and nothing on stdout: no progress bar drawn before it."""
    assert r.code == 1, (r.code, r.err)
    assert r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1 and said in r.err, r.err
    assert r.out == "", f"drawn before the error: {r.out!r}"


def test_an_existing_run_is_refused_before_the_progress_bar(ew, tmp_path: Path) -> None:
    run_dir(tmp_path, "old").mkdir(parents=True)
    _refused_at_once(ew("--store", tmp_path, "train", *FAST, "--run", "old"), "run 'old' already exists")


def test_resume_without_a_checkpoint_is_refused_before_the_progress_bar(ew, tmp_path: Path) -> None:
    r = ew("--store", tmp_path, "train", *FAST, "--run", "never", "--resume")
    _refused_at_once(r, "no checkpoint at")
    assert not run_dir(tmp_path, "never").exists()


@pytest.mark.parametrize("flag", ["--init", "--model"])
def test_a_policy_folder_without_a_model_is_refused_before_the_progress_bar(ew, tmp_path: Path, flag: str) -> None:
    r = ew("--store", tmp_path / "s", "train", *FAST, flag, tmp_path / "nothing")
    _refused_at_once(r, f"no model at {tmp_path / 'nothing'}")
    assert not (tmp_path / "s").exists()


def test_a_device_this_torch_cannot_use_is_refused_before_the_progress_bar(
    ew, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = ew("--store", tmp_path, "train", "--steps", "2", "--sft-steps", "0", "--device", "cuda")
    _refused_at_once(r, "no CUDA device is available")
    assert not any(tmp_path.iterdir())


IGNORED = [
    (["--zeta-max", "0.3"], "'--zeta-max'", "0.3: --algo grpo has no zeta (--zeta-max caps REPO's: repo-r,"),
    (["--algo", "dapo", "--zeta-max", "0.3"], "'--zeta-max'", "--algo dapo has no zeta"),
    (["--algo", "dapo", "--eps-max", "2"], "'--eps-max'", "2: --algo dapo has no eps_high controller (--eps-max caps"),
    (["--init", "x", "--resume"], "'--init'", "--init starts a new run from a policy and --resume continues"),
    (["--init", "x", "--model", "y"], "'--init'", "--init and --model both name the policy to start from"),
]


@pytest.mark.parametrize(("argv", "flag", "said"), IGNORED, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_a_flag_train_would_ignore_is_a_usage_error(ew, tmp_path: Path, argv: list[str], flag: str, said: str) -> None:
    """--zeta-max on an algorithm without zeta trained and recorded zeta_max in run.json; --init with --resume trained
    from the checkpoint, --init with --model from --init, the other flag silently dropped."""
    r = ew("--store", tmp_path, "train", *FAST, *argv)
    err = _flat(r.err)
    assert r.code == 2, (r.code, r.err)
    assert "Usage:" in err and f"Invalid value for {flag}" in err and said in err, err
    assert not any(tmp_path.iterdir()), "refused before anything was written"


@pytest.mark.parametrize(
    ("argv", "flag", "said"),
    [
        (["--algos", "grpo,repo-r,grpo"], "'--algos'", "'grpo,repo-r,grpo' names grpo twice"),
        (["--seeds", "0,1,0"], "'--seeds'", "'0,1,0' names seed 0 twice"),
    ],
)
def test_compare_refuses_an_algorithm_or_seed_named_twice(
    ew, tmp_path: Path, argv: list[str], flag: str, said: str
) -> None:
    """Both copies train the same run (``grpo-s0``): after the first finished, the second failed on "already exists"
    (exit 1, the table lost), or with --jobs 2 both appended to it."""
    r = ew("--store", tmp_path, "compare", *argv, "--steps", "1", "--sft-steps", "0", "--probe-steps", "0")
    err = _flat(r.err)
    assert r.code == 2, (r.code, r.err)
    assert f"Invalid value for {flag}" in err and said in err, err
    assert not any(tmp_path.iterdir())


def test_compare_function_refuses_repeats_before_training(tmp_path: Path) -> None:
    from entropy_watch.errors import ConfigError
    from entropy_watch.trainer.compare import compare

    with pytest.raises(ConfigError, match="algorithm grpo named twice"):
        compare("tiny", ["grpo", "grpo"], [0], tmp_path, iterations=1, sft_steps=0, precision=False)
    with pytest.raises(ConfigError, match="seed 3 named twice"):
        compare("tiny", ["grpo"], [3, 3], tmp_path, iterations=1, sft_steps=0, precision=False)
    assert not any(tmp_path.iterdir())


def test_eps_max_caps_adapo_in_the_run_it_trains(ew, tmp_path: Path) -> None:
    """The cap a note tells an ADAPO run at its cap to raise (analysis/advice.py pinned_note): settable from the CLI,
    as --zeta-max is for REPO, and stored with the run."""
    from entropy_watch.store import Store

    r = ew("--store", tmp_path, "train", *FAST, "--algo", "adapo", "--eps-max", "2", "--run", "a")
    assert r.code == 0, r.err
    assert Store(tmp_path).run_meta("a")["config"]["algo_cfg"]["adapo_eps_max"] == 2.0
