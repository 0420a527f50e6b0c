"""The comparison: every algorithm from the same SFT checkpoint, seed and step budget; the table of ALGORITHMS.md.

    entropy-watch compare --algos grpo,dapo,repo-r,adapo --preset tiny --seeds 0,1,2 --jobs 2

Per seed: one SFT run (``sft-s<seed>``), then per algorithm a task-A run (``<algo>-s<seed>``) and the
sequential-learning probe: plain GRPO on task B (``sum3sorted``) from that run's final policy
(``<algo>-s<seed>.probe-b``), the same for every algorithm so only the starting checkpoint differs (our choice).
Reported per algorithm: H_end/H_0 and the normalised area under the entropy curve (mean of H_k/H_0), pass@1 and
pass@k at the largest k, distinct correct answers in n samples, the iterations task B needs to reach a reward level,
and how often the upper clip binds (mean ``clip/high_frac`` over the run's loss forwards). The precision study trains
GRPO for the whole run in the other :data:`PRECISIONS` too (same SFT checkpoint and seed; the row of the preset's own
mode is the ``grpo`` run) and reports the mean signed log-ratio (``ratio/log_mean``), the trainer-vs-sampler log-prob
gap before each iteration's first update, the entropy trajectory and the clip fractions.

Ctrl-C: the worker processes ignore SIGINT (an idle one would die with a traceback); the parent sets a stop event
that each task checks after every step (:func:`stop_point`), so the runs in progress close as ``interrupted``, the
queued ones never start, and :func:`compare` raises :class:`ComparisonInterrupted`.
"""

from __future__ import annotations

import dataclasses
import math
import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from entropy_watch import metrics as M

SFT_LOSS = "sft/loss"
COLUMNS: tuple[tuple[str, str], ...] = (
    ("h_ratio", "H_end/H0"),
    ("auc", "AUC H/H0"),
    ("pass1", "pass@1"),
    ("passk", "pass@k"),
    ("distinct", "distinct"),
    ("b_steps", "B iters"),
    ("b_reward", "B reward"),
    ("clip_high", "clip-high"),
    ("minutes", "minutes"),  # "min" read as a minimum beside H/H0 and pass@k
    ("tokens_per_sec", "tok/s"),
)
PRECISIONS: tuple[str, ...] = ("fp32", "bf16-fp32head", "bf16-naive")  # the whole-run precision study
PRECISION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ratio_log_mean", "ratio/log_mean"),
    ("logp_gap", "|logp gap| first mb"),
    ("gap_signed", "logp gap first mb"),
    ("h_ratio", "H_end/H0"),
    ("auc", "AUC H/H0"),
    ("clip_high", "clip-high"),
    ("clip_low", "clip-low"),
    ("pass1", "pass@1"),
)


@dataclass
class ProbeConfig:
    """The sequential-learning probe (task B after task A)."""

    iterations: int = 100
    """GRPO iterations on task B."""
    reward_level: float = 0.5
    """Level the moving-average reward must reach."""
    window: int = 10
    """Moving-average window in iterations."""


class ComparisonInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`compare`, raised once every worker stopped: ``runs`` are the runs it would have written
    (the store says which finished, which were interrupted and which never started)."""

    def __init__(self, runs: list[str]) -> None:
        super().__init__(runs)
        self.runs = runs


_STOP: Any = None  # in a pool worker: the comparison's stop event (multiprocessing.Event), set by the parent


def _init_worker(stop: Any) -> None:
    """Pool worker start-up: SIGINT ignored (Ctrl-C is the parent's to handle), the stop event kept."""
    global _STOP
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP = stop


def stop_point(*_: object) -> None:
    """In a pool worker, raise KeyboardInterrupt once the parent stopped the comparison: called before each stage and
    after every step (``on_iteration``, ``on_step``), so a run in progress closes as ``interrupted``."""
    if _STOP is not None and _STOP.is_set():
        raise KeyboardInterrupt


def run_name(label: str, seed: int, probe: bool = False) -> str:
    """The run a comparison writes for ``label`` (``sft``, an algorithm, ``grpo@<precision>``) and ``seed``; ``probe``:
    its task-B probe run."""
    return f"{label}-s{seed}" + (".probe-b" if probe else "")


def sft_stage(preset_name: str, seed: int, root: str | Path, sft_steps: int | None = None) -> Path:
    """Train the shared SFT checkpoint of ``seed`` (run ``sft-s<seed>``, loss logged) and return its policy folder."""
    import torch

    from entropy_watch.hooks import Watch
    from entropy_watch.store.layout import run_dir
    from entropy_watch.trainer.checkpoint import save_policy_or_say
    from entropy_watch.trainer.config import preset
    from entropy_watch.trainer.loop import pick_device
    from entropy_watch.trainer.model import build_model
    from entropy_watch.trainer.sft import run_sft
    from entropy_watch.trainer.tasks import get_task
    from entropy_watch.trainer.tokenizer import build_tokenizer

    stop_point()
    cfg = preset(preset_name, "grpo", seed=seed, run=run_name("sft", seed))
    if sft_steps is not None:
        cfg.sft.steps = sft_steps
    torch.set_num_threads(cfg.threads)
    tokenizer = build_tokenizer(cfg.task.scripts, cfg.task.plus_signs)
    model = build_model(cfg.model, len(tokenizer), tokenizer.eos_token_id, seed).to(pick_device(cfg.device))
    with Watch(cfg.run, store=root, config=cfg.to_dict(), vocab_size=len(tokenizer), seed=seed) as w:

        def on_step(step: int, loss: float) -> None:
            w.log(step, **{SFT_LOSS: loss})
            stop_point()  # a stop closes the run as interrupted (Watch's with block)

        run_sft(model, tokenizer, get_task(cfg.task.name), cfg.sft, seed, cfg.model.precision,
                on_step=on_step, surface=cfg.task.surface())  # fmt: skip
    return save_policy_or_say(model, tokenizer, run_dir(Path(root), cfg.run) / "policy")


def steps_to_level(rewards: list[float], level: float, window: int) -> int | None:
    """First iteration count after which the trailing ``window``-mean reward is >= ``level``; None if never."""
    for i in range(len(rewards)):
        lo = max(0, i + 1 - window)
        if i + 1 >= min(window, len(rewards)) and np.mean(rewards[lo : i + 1]) >= level:
            return i + 1
    return None


def run_algo(
    preset_name: str,
    algo: str,
    seed: int,
    root: str,
    sft_dir: str,
    iterations: int | None = None,
    probe: ProbeConfig | None = None,
    rl: dict[str, Any] | None = None,
    precision: str | None = None,
    algo_overrides: dict[str, Any] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Task A with ``algo`` from ``sft_dir``, then the task-B probe; returns one table row (a plain dict).

    ``rl``: overrides of the preset's :class:`RLConfig` for task A (``lr``, ``epochs``, ``minibatches``…);
    ``precision``: train in this mode instead of the preset's (row ``algo`` becomes ``<algo>@<precision>``);
    ``algo_overrides``: of the algorithm's :class:`AlgoConfig` (e.g. a fixed ``eps_high``), with ``label`` naming the
    row and its runs (``<label>-s<seed>``).
    """
    import time

    from entropy_watch.trainer.config import preset
    from entropy_watch.trainer.evaluate import EVAL_DISTINCT, EVAL_ENTROPY
    from entropy_watch.trainer.loop import CLIP_HIGH_LEVER, RATIO_LOG_MEAN_FIRST, SAMPLER_ENTROPY, train

    stop_point()
    t0 = time.perf_counter()
    probe = probe or ProbeConfig()
    label = label or (algo if precision is None else f"{algo}@{precision}")
    cfg = preset(preset_name, algo, seed=seed, run=run_name(label, seed), **(algo_overrides or {}))
    if iterations is not None:
        cfg.rl.iterations = iterations
    if rl:
        cfg.rl = dataclasses.replace(cfg.rl, **rl)
    if precision is not None:
        cfg.model.precision = precision
    res = train(cfg, store=root, init=sft_dir, on_iteration=stop_point)
    mean = lambda key: _history_mean(res.history, key)  # noqa: E731
    ev0, ev1 = res.evals[0][1], res.evals[-1][1]
    k_max = max(cfg.eval.ks)
    row: dict[str, Any] = {
        "algo": label,
        "seed": seed,
        "h0": res.h0,
        "h_ratio": ev1[EVAL_ENTROPY] / ev0[EVAL_ENTROPY],
        "auc": float(np.mean([h[SAMPLER_ENTROPY] for h in res.history]) / res.h0) if res.history else math.nan,
        "pass1": ev1[M.pass_at_k(1)],
        "passk": ev1[M.pass_at_k(k_max)],
        "k": k_max,
        "distinct": ev1[EVAL_DISTINCT],
        "pass1_start": ev0[M.pass_at_k(1)],
        "distinct_start": ev0[EVAL_DISTINCT],
        "tokens_per_sec": res.tokens_per_sec,
        "clip_high": mean(M.CLIP_HIGH_FRAC),
        "clip_low": mean(M.CLIP_LOW_FRAC),
        "clip_high_lever": mean(CLIP_HIGH_LEVER),
        "ratio_log_mean": mean(M.RATIO_LOG_MEAN),
        "logp_gap": mean(M.PRECISION_LOGP_GAP_MEAN),
        "gap_signed": mean(RATIO_LOG_MEAN_FIRST),
        "entropy_trajectory": [h[SAMPLER_ENTROPY] / res.h0 for h in res.history],
    }
    for key in (M.CONTROL_EPS_HIGH, M.CONTROL_ZETA, M.CONTROL_TARGET):
        if res.history and key in res.history[-1]:
            row[key] = res.history[-1][key]
    if probe.iterations > 0 and res.policy_dir is not None:
        stop_point()
        cfg_b = preset(preset_name, "grpo", seed=seed, run=run_name(label, seed, probe=True))
        cfg_b.task = dataclasses.replace(cfg.task, name="sum3sorted")  # same vocabulary and surface
        cfg_b.rl.iterations, cfg_b.checkpoint_every, cfg_b.eval.every = probe.iterations, 0, 0
        res_b = train(cfg_b, store=root, init=res.policy_dir, on_iteration=stop_point)
        rewards = [h[M.REWARD_MEAN] for h in res_b.history]
        steps = steps_to_level(rewards, probe.reward_level, probe.window)
        row["b_steps"] = float(steps) if steps is not None else math.nan
        row["b_reward"] = float(np.mean(rewards[-probe.window :]))
        row["b_reward_start"] = float(np.mean(rewards[: probe.window]))
    row["minutes"] = (time.perf_counter() - t0) / 60
    return row


def _history_mean(history: list[dict[str, float]], key: str) -> float:
    """Mean of ``key`` over the iterations that logged it (NaN when none did)."""
    vals = [h[key] for h in history if key in h and h[key] == h[key]]
    return float(np.mean(vals)) if vals else math.nan


def planned_runs(algos: list[str], seeds: list[int], probe: ProbeConfig, study: list[str]) -> list[str]:
    """The runs :func:`compare` writes: per seed the SFT run, each algorithm's task-A run (and its task-B probe), and
    the precision study's GRPO runs (``grpo@<precision>-s<seed>``, no probe)."""
    out = []
    for s in seeds:
        out.append(run_name("sft", s))
        for a in algos:
            out += [run_name(a, s)] + ([run_name(a, s, probe=True)] if probe.iterations > 0 else [])
        out += [run_name(f"grpo@{p}", s) for p in study]
    return out


def _refuse_existing(root: str, names: list[str]) -> None:
    """ConfigError before anything trains when a run ``compare`` would write exists: a second comparison would append
    its steps to the first one's (the table would mix them)."""
    from entropy_watch.errors import ConfigError, listed
    from entropy_watch.store.layout import run_dir

    there = [n for n in names if run_dir(Path(root), n).exists()]
    if there:
        raise ConfigError(
            f"runs {listed(there, 5)} already exist in {root}; compare writes fresh runs: pass another --store (or "
            "remove them)"
        )


def compare(
    preset_name: str,
    algos: list[str],
    seeds: list[int],
    root: str | Path,
    *,
    iterations: int | None = None,
    sft_steps: int | None = None,
    probe: ProbeConfig | None = None,
    jobs: int = 1,
    precision: bool = True,
    rl: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole comparison; ``jobs`` processes in parallel (one torch thread each). Returns rows + summary.

    ``precision``: also the whole-run precision study (GRPO in each of :data:`PRECISIONS`, every seed, no probe).
    ``rl``: overrides of the preset's :class:`RLConfig` for every task-A run (``lr``, ``epochs``, ``minibatches``),
    checked before anything trains.
    """
    from entropy_watch.trainer.config import ALGOS, ConfigError, local_store, preset

    bad = [a for a in algos if a not in ALGOS]
    if bad:
        raise ConfigError(f"unknown algorithm {bad[0]!r}; use one of {', '.join(ALGOS)}")
    for what, names in (("algorithm", algos), ("seed", seeds)):  # one run name each: a repeat trains it twice
        twice = sorted({str(n) for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{what} {', '.join(twice)} named twice; name each {what} once")
    rl = dict(rl or {})
    dataclasses.replace(preset(preset_name).rl, **rl)  # a bad override fails here, before any training
    root = str(local_store(root))  # a local folder: the SFT policies are saved there as files
    base = preset(preset_name).model.precision  # the grpo run's own mode (gpu preset: bf16-fp32head)
    study = [p for p in PRECISIONS if precision and (p != base or "grpo" not in algos)]
    planned = planned_runs(algos, seeds, probe or ProbeConfig(), study)
    _refuse_existing(root, planned)
    ctx = get_context("spawn")
    stop = ctx.Event()
    with ProcessPoolExecutor(max(1, jobs), mp_context=ctx, initializer=_init_worker, initargs=(stop,)) as pool:
        try:
            sft = dict(zip(seeds, pool.map(sft_stage, [preset_name] * len(seeds), seeds, [root] * len(seeds),
                                           [sft_steps] * len(seeds)), strict=True))  # fmt: skip
            futs = [
                pool.submit(run_algo, preset_name, a, s, root, str(sft[s]), iterations, probe, rl)
                for s in seeds
                for a in algos
            ]
            no_probe = ProbeConfig(iterations=0)
            prec_futs = [
                pool.submit(run_algo, preset_name, "grpo", s, root, str(sft[s]), iterations, no_probe, rl, p)
                for s in seeds
                for p in study
            ]
            rows = [f.result() for f in futs]
            prec_rows = [f.result() for f in prec_futs]
        except KeyboardInterrupt as exc:  # each task stops after its current step; queued ones never start
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise ComparisonInterrupted(planned) from exc
    prec_out: dict[str, Any] = {}
    if precision:
        own = [{**r, "algo": f"grpo@{base}"} for r in rows if r["algo"] == "grpo" and base in PRECISIONS]
        prec_rows = sorted(own + prec_rows, key=lambda r: PRECISIONS.index(r["algo"].split("@")[1]))
        labels = [f"grpo@{p}" for p in PRECISIONS]
        prec_out = {"rows": prec_rows, "summary": summarize(prec_rows, labels, PRECISION_COLUMNS)}
    result = {"preset": preset_name, "rows": rows, "summary": summarize(rows, algos), "precision": prec_out}
    _save_json(Path(root) / f"_compare-{preset_name}.json", result)  # "_": Spark reads no root file as data
    return result


def _save_json(path: Path, obj: dict[str, Any]) -> None:
    """Write the comparison next to the runs (NaN as null), so tables can be rebuilt without retraining."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    from entropy_watch.jsonable import to_jsonable

    path.write_text(json.dumps(to_jsonable(obj), indent=2))


def summarize(
    rows: list[dict[str, Any]], algos: list[str], columns: tuple[tuple[str, str], ...] = COLUMNS
) -> dict[str, dict[str, tuple[float, float]]]:
    """Per algorithm and column: (mean, std over seeds), NaN-aware (a probe that never reached the level is NaN)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for a in algos:
        mine = [r for r in rows if r["algo"] == a]
        out[a] = {}
        for key, _ in columns:
            vals = np.array([r.get(key, math.nan) for r in mine], dtype=float)
            ok = vals[np.isfinite(vals)]
            out[a][key] = (float(ok.mean()), float(ok.std())) if ok.size else (math.nan, math.nan)
            out[a][key + "_n"] = (float(ok.size), float(len(vals)))
    return out


def format_table(result: dict[str, Any], part: str = "algorithms") -> Any:
    """A ``rich.table.Table`` of means ± std over seeds; ``part`` "algorithms" (B iters: reached/total in brackets)
    or "precision" (the whole-run precision study)."""
    from rich.table import Table

    block = result if part == "algorithms" else result["precision"]
    rows, summary = block["rows"], block["summary"]
    seeds = sorted({r["seed"] for r in rows})
    k = rows[0]["k"] if rows else "k"
    what = "" if part == "algorithms" else "precision, GRPO: "
    table = Table(title=f"entropy-watch compare, {what}{len(seeds)} seed(s): {', '.join(map(str, seeds))}")
    probed = any("b_steps" in r for r in rows)
    all_columns = COLUMNS if part == "algorithms" else PRECISION_COLUMNS
    columns = [(key, label) for key, label in all_columns if probed or not key.startswith("b_")]
    table.add_column("algo")
    for _key, label in columns:
        table.add_column(label.replace("pass@k", f"pass@{k}"), justify="right")
    for algo, cols in summary.items():
        cells = []
        for key, _ in columns:
            mean, std = (math.nan if v is None else v for v in cols[key])  # None: NaN read back from JSON
            if key == "tokens_per_sec":
                cell = "n/a" if math.isnan(mean) else f"{mean:.0f}"
            elif math.isnan(mean):
                cell = "n/a"
            elif key in ("ratio_log_mean", "logp_gap", "gap_signed"):
                cell = f"{mean:+.1e}" if len(seeds) == 1 else f"{mean:+.1e}±{std:.0e}"
            else:
                cell = f"{mean:.3g}" if len(seeds) == 1 else f"{mean:.3g}±{std:.2g}"
            if key == "b_steps":
                cell += f" [{int(cols[key + '_n'][0])}/{int(cols[key + '_n'][1])}]"
            cells.append(cell)
        table.add_row(algo, *cells)
    return table
