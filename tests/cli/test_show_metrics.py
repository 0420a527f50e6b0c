"""``show`` lists every canonical metric a foreign trainer's log maps to: verl and OpenRLHF log clipping only as one
low + high fraction, and both log KL; those lines were stored but never shown."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from entropy_watch.cli import app


def test_show_prints_the_clip_region_and_kl_of_a_verl_log(tmp_path: Path) -> None:
    log = tmp_path / "verl_run.jsonl"
    rows = [
        {"step": s, "actor/entropy": 1.0 - 0.01 * s, "actor/pg_clipfrac": 0.002 * s, "actor/ppo_kl": 0.001 * s,
         "actor/kl_loss": 0.003 * s, "critic/score/mean": 0.3 + 0.005 * s}
        for s in range(1, 31)
    ]  # fmt: skip
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner, store = CliRunner(), str(tmp_path / "store")
    assert runner.invoke(app, ["--store", store, "import", str(log)]).exit_code == 0
    out = runner.invoke(app, ["--store", store, "show", "verl_run"], env={"COLUMNS": "200"}).stdout
    for label, value in (("clipped (low + high)", "0.06"), ("KL to old policy", "0.03"), ("KL to reference", "0.09")):
        (line,) = [x for x in out.splitlines() if label in x]
        assert value in line, (label, line)


def test_show_keeps_the_clip_fractions_of_a_run_ending_on_a_first_pass(tmp_path: Path) -> None:
    """TRL with num_iterations=2 alternates on-policy first passes (fractions 0) and second passes: a run whose last
    step is a first pass has clip fractions, which ``show`` prints instead of "N/A (on-policy)"; N/A stays for a
    run without old log-probs (no fractions at all)."""
    from entropy_watch import metrics as M
    from entropy_watch.hooks import Watch

    store = tmp_path / "store"
    with Watch("alternating", store=store) as w:
        for s in range(1, 7):
            on = float(s % 2)
            w.log(s, **{M.ENTROPY_MEAN: 1.0, M.CLIP_ONPOLICY: on, M.CLIP_LOW_FRAC: 0.0 if on else 0.01,
                        M.CLIP_HIGH_FRAC: 0.0 if on else 0.03})  # fmt: skip
        w.log(7, **{M.ENTROPY_MEAN: 1.0, M.CLIP_ONPOLICY: 1.0, M.CLIP_LOW_FRAC: 0.0, M.CLIP_HIGH_FRAC: 0.0})
    with Watch("no-old-logp", store=store) as w:
        w.log(1, **{M.ENTROPY_MEAN: 1.0, M.CLIP_ONPOLICY: 1.0})
    runner = CliRunner()
    out = runner.invoke(app, ["--store", str(store), "show", "alternating"], env={"COLUMNS": "200"}).stdout
    assert "N/A" not in out and any(M.CLIP_HIGH_FRAC in line for line in out.splitlines())
    out = runner.invoke(app, ["--store", str(store), "show", "no-old-logp"], env={"COLUMNS": "200"}).stdout
    assert "N/A (on-policy)" in out


def test_show_lists_the_known_change_points(tmp_path: Path) -> None:
    """A resumed run's ``show`` says where it was resumed and what the analysis does there (the same words as the
    app's marks); an LR change restarts the baselines; an action event is no change point; payloads are data."""
    from entropy_watch.store import RunWriter
    from entropy_watch.synthetic import write_to_store

    store = tmp_path / "store"
    write_to_store(store, "r", "fast_collapse", seed=1, n_steps=80)
    w = RunWriter(store, "r")
    resumed = json.dumps({"checkpoint_step": 59, "checkpoint": "[red]ck[/red]"})
    w.write("events", {"step": [30, 50, 60], "kind": ["lr_schedule", "action", "resume"],
                       "payload": ["{}", "{}", resumed]})  # fmt: skip
    w.close()
    runner = CliRunner()
    out = runner.invoke(app, ["--store", str(store), "show", "r"], env={"COLUMNS": "300"}).stdout
    lines = [x for x in out.splitlines() if x.startswith("change point")]
    assert lines == [
        "change point step 30: LR schedule change — baselines restart here (a new H_ref: the level after it is "
        "compared with itself); a jump here is explained",
        "change point step 60: resume from checkpoint step 59 — the run goes on with its baselines; a jump here is "
        "explained",
    ]
    got = json.loads(runner.invoke(app, ["--store", str(store), "show", "r", "--json"]).stdout)["change_points"]
    assert got[1] == {"step": 60, "kind": "resume", "payload": {"checkpoint_step": 59, "checkpoint": "[red]ck[/red]"}}
    # the report: the same lines under the verdict (what the event said too) and a dotted line per change point
    out = tmp_path / "r.html"
    assert runner.invoke(app, ["--store", str(store), "report", "r", "-o", str(out)]).exit_code == 0
    page = out.read_text()
    assert "change point step 30: LR schedule change — baselines restart here" in page
    assert "change point step 60: resume from checkpoint step 59 — the run goes on with its baselines" in page
    assert '"name":"resume"' in page and '"name":"LR schedule change"' in page and "step 50" not in page


def test_a_long_run_name_stays_on_one_line_on_a_pipe_and_a_custom_only_run_lists_its_scalars(tmp_path: Path) -> None:
    """A table's title wraps to the table's width: ``show`` printed "befocuss__Deep-GRPO__qwen25-0.5b-gsm8k-deepg" /
    "rpo-gamma1.0 (imported, ...", so grepping the output for the run found nothing. A run that logged only scalars
    of its own names said "no scalars recorded yet"."""
    from entropy_watch.hooks import Watch

    store = tmp_path / "store"
    long = "befocuss__Deep-GRPO__qwen25-0.5b-gsm8k-deepgrpo-gamma1.0-" + "x" * 60
    with Watch(long, store=store) as w:
        for s in range(3):
            w.log(s, **{"entropy/mean": 1.0, "my/a": 1.0})
    with Watch("custom", store=store) as w:
        for s in range(3):
            w.log(s, **{"my/a": 1.0, "my/b": 2.0})
    runner = CliRunner()
    for args in (["show", long], ["ls"], ["alerts", long]):
        out = runner.invoke(app, ["--store", str(store), *args], env={"COLUMNS": ""}).stdout  # a pipe
        assert any(long in line for line in out.splitlines()), (args, out)
    out = runner.invoke(app, ["--store", str(store), "show", "custom"]).stdout
    assert "no canonical metrics; 2 other scalar(s): my/a, my/b" in out and "no scalars recorded yet" not in out
