"""`alerts` on what users point it at: messages that say what is true, exit 3 with one line naming the file on any
error (never 1, which means "warning"), "nothing to analyse" for a run without entropy, ``--fail-on`` and ``--map``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from entropy_watch.synthetic import write_to_store

SEVERITY_EXIT = {"info": 0, "warning": 1, "critical": 2}


def _one_error_line(err: str, *names: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    for n in names:
        assert n in lines[0], (n, err)


def test_missing_file_says_so(ew, store: Path, tmp_path: Path) -> None:
    for target in ("nope.csv", str(tmp_path / "sub" / "nope.csv"), "logs/run.jsonl"):
        r = ew("--store", store, "alerts", target)
        assert r.code == 3
        _one_error_line(r.err, target, "no such file")
        assert "run name" not in r.err


def test_symlink_loop_and_dangling_link(ew, store: Path, tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "gone.csv")
    r = ew("--store", store, "alerts", tmp_path / "a")
    assert r.code == 3
    _one_error_line(r.err, str(tmp_path / "a"), "symbolic link loop")
    r = ew("--store", store, "alerts", tmp_path / "dangling.csv")
    assert r.code == 3
    _one_error_line(r.err, "dangling.csv", "broken symbolic link", "gone.csv")


def test_unknown_run_lists_the_runs_that_exist(ew, store: Path) -> None:
    r = ew("--store", store, "alerts", "nope")
    assert r.code == 3
    _one_error_line(r.err, "'nope'", "g, h, sft-s0")


def test_no_target_reads_every_run_in_the_store(ew, store: Path, tmp_path: Path, monkeypatch) -> None:
    """``entropy-watch alerts`` alone (a cron job over the store) analyses every run in it, as ``watch`` follows
    them: the same entries and exit status as naming them all, store runs even where the current folder holds a file
    of a run's name; an empty store says so and exits 0."""
    every = ew("--store", store, "alerts", "--json")
    named = ew("--store", store, "alerts", "g", "h", "sft-s0", "--json")
    assert every.code == named.code and every.code in (1, 2), every.err
    assert json.loads(every.out) == json.loads(named.out)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g").write_text("not a log\n")  # a file named like the run
    assert ew("--store", store, "alerts", "--json").out == every.out
    empty = tmp_path / "empty"
    empty.mkdir()
    r = ew("--store", empty, "alerts")
    assert r.code == 0 and "no runs in" in r.out and "entropy-watch import" in r.out, r.out
    assert ew("--store", empty, "alerts", "--json").out.strip() == "[]"


def test_run_without_entropy_is_nothing_to_analyse(ew, store: Path) -> None:
    r = ew("--store", store, "alerts", "sft-s0")
    assert r.code == 0 and r.err == "", r.err
    assert r.out.count("\n") == 1 and "sft-s0: nothing to analyse" in r.out
    r = ew("--store", store, "alerts", "sft-s0", "--json")
    (entry,) = json.loads(r.out)
    assert r.code == 0 and entry["run"] == "sft-s0" and entry["alerts"] == []
    assert "nothing to analyse" in entry["notes"][0]


def test_run_without_entropy_never_hides_the_others(ew, store: Path) -> None:
    alone = ew("--store", store, "alerts", "g", "--json")
    assert alone.code in (1, 2), alone.err  # a synthetic collapse warns at least
    both = ew("--store", store, "alerts", "sft-s0", "g", "--json")
    assert both.code == alone.code
    data = json.loads(both.out)
    assert [d["run"] for d in data] == ["sft-s0", "g"] and data[1] == json.loads(alone.out)[0]
    text = ew("--store", store, "alerts", "g", "sft-s0")
    assert text.code == alone.code and "nothing to analyse" in text.out and "collapse" in text.out


def test_an_error_on_one_target_exits_3_after_the_others(ew, store: Path) -> None:
    r = ew("--store", store, "alerts", "g", "nope.csv", "--json")
    assert r.code == 3
    _one_error_line(r.err, "nope.csv")
    data = json.loads(r.out)
    assert data[0]["run"] == "g" and data[0]["alerts"] and "nope.csv" in data[1]["error"]


def test_a_bug_exits_3_not_1(ew, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import entropy_watch.analysis

    def boom(*a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(entropy_watch.analysis, "analyze", boom)
    r = ew("--store", store, "alerts", "g")
    assert r.code == 3 and r.err.count("\n") == 1
    assert r.err.startswith("internal error (TypeError)") and "run=g" in r.err


def _deep_json(p: Path) -> Path:
    p.write_text("[" * 100_000 + "]" * 100_000)
    return p


def _deep_jsonl(p: Path) -> Path:
    p.write_text('{"step": 1, "entropy": 0.5}\n{"step": 2, "entropy": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    return p


def _overflow(p: Path) -> Path:
    p.write_text(f"step,entropy\n1,0.5\n{2**70},0.4\n")
    return p


def _huge_column(p: Path) -> Path:
    p.write_text("step," + "x" * (1 << 20) + "\n1,0.5\n")
    return p


@pytest.mark.parametrize(
    "make", [_deep_json, _deep_jsonl, _overflow, _huge_column], ids=["deep-json", "deep-jsonl", "overflow", "1MB-col"]
)
def test_hostile_log_files_exit_3_with_one_line(ew, store: Path, tmp_path: Path, make) -> None:
    suffix = ".json" if make is _deep_json else ".jsonl" if make is _deep_jsonl else ".csv"
    p = make(tmp_path / f"bad{suffix}")
    r = ew("--store", store, "alerts", p)
    assert r.code == 3, (r.code, r.err)
    _one_error_line(r.err, p.name)


@pytest.mark.skipif(not os.path.exists("/dev/zero") or sys.platform == "win32", reason="needs /dev/zero and FIFOs")
def test_devices_and_fifos_exit_3_without_hanging(ew_proc, store: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for target in ("/dev/zero", str(fifo)):
        r = ew_proc("--store", store, "alerts", target, timeout=30)
        assert r.code == 3, (target, r.code, r.err)
        _one_error_line(r.err, target)


def test_corrupt_segment_exits_3_naming_the_run(ew, tmp_path: Path) -> None:
    write_to_store(tmp_path, "c", kind="collapse_exp", seed=2, n_steps=120)
    seg = sorted((tmp_path / "run=c" / "table=scalars").rglob("*.parquet"))[0]
    pq.read_metadata(seg)  # a real segment before we break it
    seg.write_bytes(b"PAR1 this is not a parquet file")
    r = ew("--store", tmp_path, "alerts", "c")
    assert r.code == 3, (r.code, r.err)
    _one_error_line(r.err, "run=c")


def _gated_exit(alerts: list[dict], kinds: set[str] | None) -> int:
    return max(
        [0, *(SEVERITY_EXIT[a["severity"]] for a in alerts if a["standing"] and (kinds is None or a["kind"] in kinds))]
    )


def test_the_exit_status_is_the_verdicts_a_cleared_episode_is_listed_not_counted(ew, tmp_path: Path) -> None:
    """An explosion that lasted 20 points and cleared: the headline says "ok ... cleared at step N" and the gate
    passes, as the verdict does; its alerts stay listed, marked cleared. Read before it cleared, it gates."""
    t = np.arange(120)
    rng = np.random.default_rng(2)
    h = np.where((t >= 40) & (t < 60), 1.5, 0.3) * np.exp(0.03 * rng.standard_normal(t.size))
    log = tmp_path / "x.csv"
    log.write_text("step,entropy\n" + "".join(f"{s},{float(v)!r}\n" for s, v in zip(t, h, strict=True)))
    r = ew("alerts", log, "--json")
    (entry,) = json.loads(r.out)
    assert entry["verdict"]["health"] == "ok" and "cleared at step" in entry["verdict"]["headline"]
    explosion = [a for a in entry["alerts"] if a["kind"] == "explosion"]
    assert explosion and not any(a["standing"] for a in explosion) and max(a["severity"] != "info" for a in explosion)
    assert r.code == _gated_exit(entry["alerts"], None) == 0
    assert ew("alerts", log, "--fail-on", "explosion").code == 0
    table = ew("alerts", log)
    assert table.code == 0 and "cleared" in table.out
    cut = tmp_path / "during.csv"
    cut.write_text("".join(log.read_text().splitlines(keepends=True)[:57]))  # header + steps 0-55
    during = ew("alerts", cut, "--json")
    assert during.code == SEVERITY_EXIT[json.loads(during.out)[0]["verdict"]["health"]] >= 1


def test_filters_that_leave_nothing_say_so(ew, store: Path) -> None:
    r = ew("--store", store, "alerts", "g", "--since", "100000")
    assert "g: no alerts at or after step 100000" in r.out and r.code == 0


def test_fail_on_sets_the_exit_status_from_those_kinds_only(ew, store: Path) -> None:
    full = ew("--store", store, "alerts", "g", "--json")
    listed = json.loads(full.out)[0]["alerts"]
    assert full.code == _gated_exit(listed, None) == 2
    assert _gated_exit(listed, {"explosion"}) < full.code  # a collapsing run has no explosion alert
    for gate in ("explosion", "collapse", "collapse,explosion", "explosion,cliff, zero_variance_groups"):
        r = ew("--store", store, "alerts", "g", "--json", "--fail-on", gate)
        assert json.loads(r.out)[0]["alerts"] == listed  # what is listed does not change
        assert r.code == _gated_exit(listed, {k.strip() for k in gate.split(",")}), gate
    assert "--fail-on" in ew("alerts", "--help").out


def test_map_for_log_files(ew, store: Path, tmp_path: Path) -> None:
    rows = "\n".join(f"{5 * i},{2.0 * 0.97**i:.5f},{0.1 + 0.005 * i:.4f}" for i in range(60))
    p = tmp_path / "odd.csv"
    p.write_text("tick,policy_h,score\n" + rows + "\n")
    unmapped = ew("--store", store, "alerts", p)
    assert unmapped.code == 3  # no entropy column it knows
    r = ew("--store", store, "alerts", p, "--map", "step=tick", "-m", "entropy=policy_h", "--map", "reward=score")
    assert r.code in (0, 1, 2), r.err
    same = ew("--store", store, "alerts", p, "--json", "--map", "entropy=policy_h", "--map", "step=tick")
    assert json.loads(same.out)[0]["source"] == str(p)
    r = ew("--store", store, "alerts", "g", "--map", "entropy=x")  # a store run's columns are named: a usage error
    assert r.code == 2 and "Usage:" in r.err and "--map applies to log files; g is a run" in r.err, r.err


@pytest.mark.parametrize("column", ["step_inferred", "global_step", "_step", "trainer/global_step"])
def test_step_aliases(ew, tmp_path: Path, column: str) -> None:
    p = tmp_path / "trl.jsonl"
    p.write_text("".join(json.dumps({column: 5 * (i + 1), "entropy": 1.0 - 0.01 * i}) + "\n" for i in range(40)))
    r = ew("--store", tmp_path / "s", "import", p, "--json")
    assert r.code == 0, r.err
    (row,) = json.loads(r.out)["runs"]
    assert (row["first_step"], row["last_step"]) == (5, 200) and row["mapping"]["step"] == column
    r = ew("--store", tmp_path / "s", "alerts", p, "--json")
    assert r.code in (0, 1, 2), r.err


def test_control_characters_in_a_file_name_are_escaped(ew, store: Path, tmp_path: Path) -> None:
    for name in ("bad\x1b[31mname.csv", "nope\x1b]0;title\x07.csv"):
        (tmp_path / name).write_text("")  # an empty log: the importer's message quotes the path
        for target in (tmp_path / name, tmp_path / "missing" / name):
            r = ew("--store", store, "alerts", target)
            assert r.code == 3 and "\x1b" not in r.err and "\\x1b" in r.err, r.err


def test_a_column_logged_every_k_steps_in_a_shared_table(ew, store: Path, tmp_path: Path) -> None:
    """A W&B-style table: reward every step, entropy every 5th with ``NaN`` between. The NaN cells are gaps (the same
    alerts as the file with empty cells, and the import says so), not 80 divergences; NaN where a value was due is."""
    from entropy_watch.synthetic import generate

    run = generate("explosion", seed=3, n_steps=300)

    def write(name: str, cell) -> Path:
        lines = ["_step,train/reward,train/entropy"]
        lines += [f"{s},{run.reward[s]:.4f},{cell(s)}" for s in range(300)]
        (p := tmp_path / name).write_text("\n".join(lines) + "\n")
        return p

    def logged(s: int) -> str:
        return f"{run.entropy[s]:.5f}" if s % 5 == 0 else ""

    got = {}
    for name, cell in {"blank.csv": logged, "nan.csv": lambda s: logged(s) or "NaN"}.items():
        r = ew("--store", store, "alerts", write(name, cell), "--json")
        (entry,) = json.loads(r.out)
        got[name] = (r.code, [a["key"] for a in entry["alerts"]], entry["notes"])
    assert got["blank.csv"][:2] == got["nan.csv"][:2]
    assert got["nan.csv"][0] in (1, 2) and not any("nonfinite" in k for k in got["nan.csv"][1])
    assert any("explosion" in k for k in got["nan.csv"][1])
    assert any("'train/entropy' (240 of 300 rows, logged every 5 steps)" in n for n in got["nan.csv"][2])
    diverged = write("diverged.csv", lambda s: "NaN" if s >= 250 else logged(s) or "NaN")
    r = ew("--store", store, "alerts", diverged, "--json")
    (entry,) = json.loads(r.out)
    assert r.code == 2 and "250:guard.nonfinite:nonfinite:critical" in [a["key"] for a in entry["alerts"]]


@pytest.mark.parametrize("order", ["newest-first", "shuffled", "restart"])
def test_a_log_file_and_its_import_give_one_verdict(ew, tmp_path: Path, order: str) -> None:
    """`alerts FILE` and `import FILE; alerts RUN` read the same restarts: a file written newest first or shuffled has
    none (it reset the stored run's baselines at every point: no alert at all on an explosion to 10 nats), a resumed
    log has its one (which `alerts FILE` ignored)."""
    import numpy as np

    from entropy_watch.store import Store
    from entropy_watch.synthetic import generate

    run = generate("explosion", seed=5, n_steps=120)
    rows = [(s, run.entropy[s], run.reward[s]) for s in range(120)]
    if order == "newest-first":
        rows = rows[::-1]
    elif order == "shuffled":
        rows = [rows[i] for i in np.random.default_rng(0).permutation(120)]
    else:  # crashed after step 79, resumed from step 60: steps 60-79 logged twice, the second time as now
        rows = [(s, h * 0.9, r) for s, h, r in rows[:80]] + rows[60:]
    p = tmp_path / "log.csv"
    p.write_text("step,entropy,reward\n" + "".join(f"{s},{h:.6f},{r:.4f}\n" for s, h, r in rows))
    store = tmp_path / "store"
    assert ew("--store", store, "import", p, "--run", "r").code == 0
    keys = {}
    for target in (p, "r"):
        r = ew("--store", store, "alerts", target, "--json")
        (entry,) = json.loads(r.out)
        keys[str(target)] = ([a["key"] for a in entry["alerts"]], entry["notes"])
    assert keys[str(p)] == keys["r"]  # the alerts and the notes, the import's among them
    events = [e["kind"] for e in Store(store).events("r")]
    assert events == (["resume"] if order == "restart" else [])
    if order != "restart":
        assert any("explosion" in k for k in keys["r"][0])
        assert any("rows are not in step order" in n for n in keys["r"][1])
        assert "rows are not in step order" in ew("--store", store, "show", "r").out  # and show, and the report
        for target in (p, "r"):
            out = tmp_path / "report.html"
            assert ew("--store", store, "report", target, "-o", out).code == 0
            assert "rows are not in step order" in out.read_text()


@pytest.mark.parametrize("kind", ["fast_collapse", "explosion"])
def test_a_resume_does_not_hide_what_came_before_it(ew, tmp_path: Path, kind: str) -> None:
    """A run that crashed deep into a collapse (or an explosion) and resumed from its last checkpoint goes on where it
    was: its log read with the restart gives the verdict of the same points logged once. The resume took a new
    H_ref at the fallen level ("warning: 34% of H_ref 0.22" for a run at 4% of its early entropy; "ok" for an
    explosion)."""
    from entropy_watch.synthetic import generate

    run = generate(kind, seed=5, n_steps=120)
    rows = [(s, run.entropy[s], run.reward[s]) for s in range(120)]
    at = 100 if kind == "fast_collapse" else int(run.onset_step or 0) + 25
    once, restarted = tmp_path / "once.csv", tmp_path / "restarted.csv"
    for p, logged in ((once, rows), (restarted, rows[: at + 10] + rows[at:])):  # crashed at at+9, resumed at at
        p.write_text("step,entropy,reward\n" + "".join(f"{s},{h:.6f},{r:.4f}\n" for s, h, r in logged))
    got = {}
    for p in (once, restarted):
        r = ew("--store", tmp_path / "store", "alerts", p, "--json")
        v = json.loads(r.out)[0]["verdict"]
        got[p.name] = (r.code, v["health"], v["kind"], v["reference"]["value"], [a["key"] for a in v["alerts"]])
    assert got["restarted.csv"] == got["once.csv"]
    assert got["once.csv"][:3] == (2, "critical", "collapse" if kind == "fast_collapse" else "explosion")


def test_the_user_gives_the_vocabulary_size(ew, tmp_path: Path) -> None:
    """A CSV states no V: ``--vocab-size`` on `alerts FILE`, `report FILE` and `import` gives it (a near-uniform start
    is then its own info note and ln V is named); the import keeps it in run.json, so the stored run gives the same
    verdict. For a stored run it is refused with one line saying where to give it; a V below 2 is a usage error."""
    from entropy_watch.synthetic import generate

    run = generate("near_uniform", seed=3, n_steps=120)
    p = tmp_path / "log.csv"
    p.write_text(
        "step,entropy,reward\n" + "".join(f"{s},{run.entropy[s]:.6f},{run.reward[s]:.4f}\n" for s in range(120))
    )
    store = tmp_path / "store"
    v = str(run.vocab_size)

    def verdict(*args: object) -> dict:
        r = ew("--store", store, "alerts", *args, "--json")
        assert r.code in (0, 1, 2), r.err
        (entry,) = json.loads(r.out)
        return entry

    plain, given = verdict(p), verdict(p, "--vocab-size", v)
    assert plain["verdict"]["ln_v"] is None and not any("near_uniform" in a["key"] for a in plain["alerts"])
    assert given["verdict"]["ln_v"] == pytest.approx(float(np.log(run.vocab_size)))
    assert any("near_uniform" in a["key"] for a in given["alerts"])
    assert ew("--store", store, "import", p, "--run", "r", "--vocab-size", v).code == 0
    from entropy_watch.store import Store

    assert Store(store).run_meta("r")["vocab_size"] == run.vocab_size
    stored = verdict("r")
    assert [a["key"] for a in stored["alerts"]] == [a["key"] for a in given["alerts"]]
    assert stored["verdict"]["headline"] == given["verdict"]["headline"]
    out = tmp_path / "report.html"
    assert ew("--store", store, "report", p, "-o", out, "--vocab-size", v).code == 0
    assert "ln V" in out.read_text()
    r = ew("--store", store, "alerts", "r", "--vocab-size", v)
    assert r.code == 2 and "--vocab-size applies to log files" in r.err and "import --vocab-size" in r.err, r.err
    for cmd in ("alerts", "import", "report"):
        r = ew("--store", store, cmd, p, "--vocab-size", "1")
        assert r.code == 2 and "--vocab-size" in r.err, (cmd, r.err)


def test_report_maps_the_columns_of_a_log_file(ew, tmp_path: Path) -> None:
    rows = "\n".join(f"{5 * i},{2.0 * 0.97**i:.5f},{0.1 + 0.005 * i:.4f}" for i in range(60))
    p = tmp_path / "odd.csv"
    p.write_text("tick,policy_h,score\n" + rows + "\n")
    out = tmp_path / "report.html"
    assert ew("report", p, "-o", out).code == 1  # no entropy column it knows
    r = ew("report", p, "-o", out, "--map", "step=tick", "-m", "entropy=policy_h", "--map", "reward=score")
    assert r.code == 0, r.err
    assert "odd" in out.read_text()


def test_the_user_gives_the_rewards_maximum(ew, tmp_path: Path) -> None:
    """A solved task whose reward is the sum of two reward functions (0..2): without its maximum the ceiling is
    unknown, so the collapse stays a collapse and a note says how to state it; ``--reward-max 2`` on `alerts FILE`,
    `report FILE`, `watch LOG` and `import` (kept in run.json) makes it the benign saturation it is. Refused for a
    stored run with one line; 0 or less is a usage error."""
    from entropy_watch.synthetic import generate

    run = generate("solved", seed=1, n_steps=100)
    p = tmp_path / "two.csv"
    p.write_text(
        "step,entropy,reward\n"
        + "".join(f"{s},{run.entropy[s]:.6f},{2 * run.reward[s]:.4f}\n" for s in range(run.entropy.size))
    )
    store = tmp_path / "store"

    def kinds(*args: object) -> tuple[set[str], list[str]]:
        r = ew("--store", store, "alerts", *args, "--json")
        assert r.code in (0, 1, 2), r.err
        (entry,) = json.loads(r.out)
        return {a["kind"] for a in entry["alerts"]} & {"collapse", "saturation"}, entry["verdict"]["notes"]

    plain, notes = kinds(p)
    assert "collapse" in plain and any("--reward-max" in n for n in notes), notes
    given, notes = kinds(p, "--reward-max", "2")
    assert given == {"saturation"} and not any("--reward-max" in n for n in notes)
    assert ew("--store", store, "import", p, "--run", "r", "--reward-max", "2").code == 0
    from entropy_watch.store import Store

    assert Store(store).run_meta("r")["reward_max"] == 2.0
    assert kinds("r")[0] == {"saturation"}
    r = ew("--store", store, "watch", p, "--once", "--json", "--min-severity", "info", "--reward-max", "2")
    assert r.code == 0 and '"saturation"' in r.out and '"collapse"' not in r.out, r.out
    out = tmp_path / "report.html"
    assert ew("--store", store, "report", p, "-o", out, "--reward-max", "2").code == 0
    r = ew("--store", store, "alerts", "r", "--reward-max", "2")
    assert r.code == 2 and "--reward-max applies to log files" in r.err and "import --reward-max" in r.err, r.err
    for cmd in ("alerts", "import", "report"):
        r = ew("--store", store, cmd, p, "--reward-max", "0")
        assert r.code == 2 and "--reward-max" in r.err, (cmd, r.err)
    r = ew("--store", store, "watch", "r", "--once", "--reward-max", "2")
    assert r.code == 2 and "--reward-max applies to log files" in r.err, r.err


def test_trl_reward_functions_tell_the_rewards_maximum(ew, tmp_path: Path) -> None:
    """TRL logs each reward function (``rewards/<f>/mean``) beside their sum (``reward``): two functions within
    [0, 1] that add up to the reward give it the ceiling 2, with a note, so a solved task is benign without
    ``--reward-max``, from the log and from the stored run alike; a weighted sum (not their plain sum) says nothing."""
    from entropy_watch.synthetic import generate

    run = generate("solved", seed=1, n_steps=100)

    def log(name: str, weight: float) -> Path:
        p = tmp_path / name
        rows = []
        for s in range(run.entropy.size):
            acc, fmt = run.reward[s], 1.0  # the format is right from the start
            rows.append(
                {
                    "step": s + 1,
                    "entropy": run.entropy[s],
                    "rewards/accuracy/mean": acc,
                    "rewards/format/mean": fmt,
                    "reward": acc + weight * fmt,
                }  # fmt: skip
            )
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return p

    store = tmp_path / "store"

    def kinds(target: object) -> tuple[set[str], list[str]]:
        r = ew("--store", store, "alerts", target, "--json")
        assert r.code in (0, 1, 2), r.err
        (entry,) = json.loads(r.out)
        return {a["kind"] for a in entry["alerts"]} & {"collapse", "saturation"}, entry["verdict"]["notes"]

    plain = log("trl.jsonl", 1.0)
    got, notes = kinds(plain)
    assert got == {"saturation"}, notes
    assert any("sum of 2 reward functions" in n and "its ceiling is 2" in n for n in notes), notes
    assert ew("--store", store, "import", plain, "--run", "r").code == 0
    assert kinds("r") == (got, notes)
    got, notes = kinds(log("weighted.jsonl", 0.5))
    assert "collapse" in got and any("its ceiling is unknown" in n for n in notes), notes
