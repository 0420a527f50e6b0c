"""OpenRLHF advice names only flags the run's release takes, or says which release it needs.

The flat flags came one by one (read from every ``train_ppo_ray`` parser 0.8.0 to 0.10.1, post-releases too):
``--dynamic_filtering`` and ``--dynamic_filtering_reward_range`` in 0.8.1, ``--eps_clip_low_high`` in 0.8.2,
``--dual_clip`` in 0.8.6. An OpenRLHF 0.8.0 run was told "--eps_clip_low_high 0.2 0.28", "set --dual_clip" and
"--dynamic_filtering", which its parser rejects. Now each such line says the release the flag needs. The verdict and
the alerts are the same: only the wording of their actions changes."""

from __future__ import annotations

import re

import pytest

from entropy_watch.aliases import OPENRLHF_FLAT_FLAGS, OPENRLHF_FLAT_SINCE
from entropy_watch.analysis.advice import SLOTS, Facts, actions, run_facts

from .test_s48_advice import collapse_alerts

FIRST = {"eps_clip_low_high": "0.8.2", "dual_clip": "0.8.6", "dynamic_filtering": "0.8.1",
         "dynamic_filtering_reward_range": "0.8.1"}  # fmt: skip
"""The first release whose parser takes each flag the advice names that 0.8.0's lacks (``add_argument`` read from
the wheels of 0.8.0, 0.8.0.post1, 0.8.1, 0.8.1.post1, 0.8.2 ... 0.8.11, 0.9.0, 0.9.5, 0.9.10, 0.10.0, 0.10.1)."""


def meta(version: str) -> dict:
    return {"framework": "openrlhf", "config": {"actor": {"eps_clip": 0.2}}, "versions": {"openrlhf": version}}


def every_line(version: str) -> list[str]:
    facts = Facts(run_facts(meta(version)), {})
    return [line for kind in SLOTS for line in actions(kind, facts) if line.startswith("OpenRLHF:")]


def release(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_the_table_is_what_the_parsers_say() -> None:
    assert {OPENRLHF_FLAT_FLAGS[k]: ".".join(map(str, v)) for k, v in OPENRLHF_FLAT_SINCE.items()} == {
        **FIRST,
        "policy_loss_type": "0.8.8",
    }


@pytest.mark.parametrize("version", ["0.8.0", "0.8.0.post1", "0.8.1", "0.8.1.post1", "0.8.3", "0.8.5", "0.8.6",
                                     "0.8.11", "0.10.1"])  # fmt: skip
def test_each_flag_a_line_names_is_the_runs_or_the_line_says_the_release_it_needs(version: str) -> None:
    have = release(re.match(r"\d+\.\d+\.\d+", version)[0])
    lines = every_line(version)
    assert len(lines) >= 8
    for line in lines:
        got = re.search(r" \((--[^()]*; this run's is [\d.]+)\)$", line)  # the note: the line's last parenthesis
        body, note = (line[: got.start()], got[1]) if got else (line, "")
        late = {f for f in re.findall(r"--([a-z_]+)", body) if f in FIRST and have < release(FIRST[f])}
        assert set(re.findall(r"--([a-z_]+)", note)) == late, (version, line)
        for flag in late:  # grouped by release: "--a and --b need OpenRLHF >= 0.8.1"
            assert re.search(rf"--{flag}\b[^;]*needs? OpenRLHF >= {re.escape(FIRST[flag])};", note), (version, line)
        if late:
            assert note.endswith(f"this run's is {'.'.join(map(str, have))}"), line


def test_openrlhf_0_8_0_is_told_what_it_lacks() -> None:
    lines = every_line("0.8.0")
    assert (
        "OpenRLHF: tighten the low side of --eps_clip_low_high, or set --dual_clip (e.g. 3) (--eps_clip_low_high "
        "needs OpenRLHF >= 0.8.2; --dual_clip needs OpenRLHF >= 0.8.6; this run's is 0.8.0)"
    ) in lines
    assert (
        "OpenRLHF: --dynamic_filtering with --dynamic_filtering_reward_range (dynamic sampling) (--dynamic_filtering "
        "and --dynamic_filtering_reward_range need OpenRLHF >= 0.8.1; this run's is 0.8.0)"
    ) in lines


def test_the_alerts_are_the_same_whatever_the_release() -> None:
    old, new = collapse_alerts(meta("0.8.0")), collapse_alerts(meta("0.8.11"))
    assert [(a.kind, a.severity, a.step, a.message) for a in old] == [(a.kind, a.severity, a.step, a.message)
                                                                       for a in new]  # fmt: skip
    assert old and any(a.actions != b.actions for a, b in zip(old, new, strict=True))
