"""``entropy-watch train`` and ``entropy-watch compare``: the bundled REPO/ADAPO reference trainer.

    entropy-watch train --algo repo-r --preset tiny --steps 300 --seed 0          # run 'repo-r-s0' in ./ew_runs
    entropy-watch compare --algos grpo,dapo,repo-r,adapo --preset tiny --seeds 0,1,2 --jobs 2

torch and transformers are imported inside the command functions, so ``entropy-watch --help`` stays light.

Ctrl-C ends either command with exit status 130 and one line on stderr: where the training stopped, that what it
logged stays in the store (the run reads ``interrupted``) and how to go on.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import typer

from entropy_watch.cli.common import echo, echo_json, fail, positive, run_name, state
from entropy_watch.errors import ConfigError, listed, require
from entropy_watch.store.layout import run_dir
from entropy_watch.trainer.config import ALGOS, PRECISIONS, PRESETS, TrainConfig, preset
from entropy_watch.trainer.tasks import TASKS
from entropy_watch.trainer.tokenizer import NUMERAL_SCRIPTS

DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
T = TypeVar("T")
# What the reference trainer imports beyond the core (its model and tokenizer are transformers objects), and the
# extras that install them.
TRAINER_MODULES: tuple[str, ...] = ("torch", "transformers")
TRAINER_EXTRAS = "torch,hf"


def _require_trainer() -> None:
    """One line naming the extras to install when torch or transformers is missing (:class:`MissingExtra`, exit 1),
    before anything is written; the import inside the command was an "internal error" on a core install."""
    require(TRAINER_MODULES, TRAINER_EXTRAS, needs="the reference trainer")


def _one_of(choices: Iterable[str], what: str) -> Callable[[str | None], str | None]:
    """Option callback: one of ``choices`` (a usage error naming the value and the choices otherwise)."""
    names = tuple(choices)

    def check(value: str | None) -> str | None:
        if value is not None and value not in names:
            raise typer.BadParameter(f"unknown {what} {value!r}; use one of {', '.join(names)}")
        return value

    return check


def _flag_value(flag: str, value: Any, build: Callable[[], T]) -> T:
    """``build()`` with one flag's value in it: the trainer's :class:`ConfigError` (the rule lives once, in
    ``trainer/config.py``) becomes a usage error naming the flag and the value."""
    try:
        return build()
    except ConfigError as e:
        raise typer.BadParameter(f"{value!r} ({e})", param_hint=f"'{flag}'") from None


def _device(value: str) -> str:
    """--device: auto, cpu, mps, cuda or cuda:N (a usage error otherwise, not torch's "internal error")."""
    if not DEVICE.fullmatch(value):
        raise typer.BadParameter(f"{value!r}; use auto, cpu, cuda or cuda:N")
    return value


def _algos(value: str) -> str:
    names = [a.strip() for a in value.split(",") if a.strip()]
    if not names:
        raise typer.BadParameter("name at least one algorithm, e.g. grpo,repo-r")
    for name in names:
        _one_of(ALGOS, "algorithm")(name)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # both would train run <algo>-s<seed>: the second refused (or, in parallel, mixed into the first)
        raise typer.BadParameter(f"{value!r} names {', '.join(twice)} twice; name each algorithm once")
    return value


def _seeds(value: str | None) -> str | None:
    """--seeds: comma-separated integers >= 0 (a usage error otherwise, before anything trains)."""
    if value is None:
        return None
    try:
        seeds = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise typer.BadParameter(f"{value!r}; use comma-separated integers >= 0 such as 0,1,2")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:  # both would train the runs *-s<seed>
        raise typer.BadParameter(f"{value!r} names seed {', '.join(map(str, twice))} twice; name each seed once")
    return value


def _check_flag_pairs(
    algo: str, *, zeta_max: float | None, eps_max: float | None, init: str | None, model: str | None, resume: bool
) -> None:
    """Flags ``train`` would otherwise silently ignore: a usage error naming them, before anything trains."""
    if zeta_max is not None and not ALGOS[algo].get("repo"):
        repo = ", ".join(name for name, keys in ALGOS.items() if keys.get("repo"))
        raise typer.BadParameter(
            f"{zeta_max:g}: --algo {algo} has no zeta (--zeta-max caps REPO's: {repo})",
            param_hint="'--zeta-max'",
        )
    if eps_max is not None and ALGOS[algo].get("controller") != "adapo":
        adapo = ", ".join(name for name, keys in ALGOS.items() if keys.get("controller") == "adapo")
        raise typer.BadParameter(
            f"{eps_max:g}: --algo {algo} has no eps_high controller (--eps-max caps ADAPO's: {adapo})",
            param_hint="'--eps-max'",
        )
    if init is not None and resume:
        raise typer.BadParameter(
            "--init starts a new run from a policy and --resume continues the run's own checkpoint: give one",
            param_hint="'--init'",
        )
    if init is not None and model is not None:
        raise typer.BadParameter(
            "--init and --model both name the policy to start from: give one", param_hint="'--init'"
        )


def _train_interrupted(stop: KeyboardInterrupt, cfg: TrainConfig, root: Path | str, resume: bool) -> str:
    """The line ``train`` prints on Ctrl-C: where it stopped, what is kept, how to go on (``--resume`` only where a
    checkpoint can continue it)."""
    from entropy_watch.trainer.loop import TrainingInterrupted  # torch: loaded by the training already

    if not isinstance(stop, TrainingInterrupted):  # before the run was in the store, or a second Ctrl-C closing it
        if not resume and not run_dir(root, cfg.run).exists():
            return "stopped before step 0 (setup or SFT warm-up); nothing was logged: run the command again"
        return f"run {cfg.run!r} stopped; what it logged stays in {root} (entropy-watch show {cfg.run}: how far it got)"
    # steps count from 0: stopped during step 86, `ls` shows 85, the last step done (86 of the planned steps)
    done = f"{stop.step} of {cfg.rl.iterations} steps done"
    where = f"run {cfg.run!r} stopped during step {stop.step} ({done}); what it logged stays in {root}"
    if stop.checkpoint is not None:
        return f"{where}; to continue from its last checkpoint (step {stop.checkpoint}) rerun the command with --resume"
    every = f"one every {cfg.checkpoint_every} steps" if cfg.checkpoint_every else "one only at the end"
    return (
        f"{where}; it has no checkpoint yet ({every}), so --resume cannot continue it: start over with another "
        f"--run, or delete {run_dir(root, cfg.run)}"
    )


def _comparison_interrupted(runs: list[str], root: Path | str) -> str:
    """The line ``compare`` prints on Ctrl-C: its runs that were interrupted (and at which step), how many finished
    and how many never started, read from the store; a comparison cannot be resumed."""
    from entropy_watch.store import Store

    wanted = set(runs)
    infos = {i.name: i for i in Store(root).runs() if i.name in wanted}
    if not infos:
        return "compare stopped before its first run started; nothing was logged"
    stopped = [n + ("" if infos[n].last_step is None else f" at step {infos[n].last_step}")
               for n in runs if n in infos and infos[n].state == "interrupted"]  # fmt: skip
    finished = sum(info.state == "finished" for info in infos.values())
    which = f" ({listed(stopped)})" if stopped else ""
    return (
        f"compare stopped; of its {len(runs)} runs {finished} finished, {len(stopped)} interrupted{which}, "
        f"{len(runs) - len(infos)} never started; what they logged stays in {root}; a comparison cannot be resumed: "
        "rerun it with another --store (or remove its runs from this one)"
    )


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        ctx: typer.Context,
        algo: str = typer.Option(
            "grpo", "--algo", "-a", callback=_one_of(ALGOS, "algorithm"), help=f"{', '.join(ALGOS)}."
        ),  # the trainer's own table
        task: str = typer.Option(
            "sum3", "--task", callback=_one_of(TASKS, "task"), help="sum3 (task A) or sum3sorted (task B, the probe)."
        ),
        preset_name: str = typer.Option(
            "tiny", "--preset", "-p", callback=_one_of(PRESETS, "preset"), help="tiny (CPU, 1-2 min) or gpu (one GPU)."
        ),
        steps: int = typer.Option(None, "--steps", "-n", min=1, help="RL iterations (default: the preset's)."),
        run: str = typer.Option(None, "--run", "-r", callback=run_name, help="Run name (default: <algo>-s<seed>)."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of model init, SFT data and sampling."),
        device: str = typer.Option("auto", "--device", callback=_device, help="auto, cpu, cuda or cuda:N."),
        precision: str = typer.Option(
            None,
            "--precision",
            callback=_one_of(PRECISIONS, "precision"),
            help="fp32, bf16, bf16-fp32head or bf16-naive.",
        ),
        model: str = typer.Option(None, "--model", help="Local HF causal LM + tokenizer folder to train."),
        init: str = typer.Option(None, "--init", help="Start from this policy/checkpoint folder (skips SFT)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run from its latest checkpoint."),
        sft_steps: int = typer.Option(None, "--sft-steps", min=0, help="SFT warm-up steps (default: the preset's)."),
        zeta_max: float = typer.Option(
            None, "--zeta-max", callback=positive, help="REPO |zeta| cap (0.25 tiny vocab, 0.05 for LLMs)."
        ),
        eps_max: float = typer.Option(
            None, "--eps-max", callback=positive, help="ADAPO eps_high cap (adapo_eps_max; default: the preset's)."
        ),
        lr: float = typer.Option(None, "--lr", callback=positive, help="RL learning rate (default: the preset's)."),
        scripts: int = typer.Option(
            None,
            "--scripts",
            min=1,
            max=len(NUMERAL_SCRIPTS),
            help="Numeral scripts in the vocabulary (default: the preset's; 1 = ASCII digits only).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the result summary as JSON."),
    ) -> None:
        """Train one run with the reference trainer and log it to the store."""
        _require_trainer()
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from entropy_watch import metrics as M
        from entropy_watch.trainer.loop import SAMPLER_ENTROPY, check_start, train

        _check_flag_pairs(algo, zeta_max=zeta_max, eps_max=eps_max, init=init, model=model, resume=resume)
        # --algo and --preset are checked by their callbacks: a ConfigError here is the one cap flag given (each
        # belongs to another algorithm) against the algorithm's own bounds (zeta_min, eps_high)
        flag, cap, overrides = "--zeta-max", zeta_max, {} if zeta_max is None else {"zeta_max": zeta_max}
        if eps_max is not None:
            flag, cap, overrides = "--eps-max", eps_max, {"adapo_eps_max": eps_max}
        cfg = _flag_value(flag, cap, lambda: preset(preset_name, algo, seed=seed, run=run, **overrides))
        surface = {} if scripts is None else {"scripts": scripts}
        cfg.task = dataclasses.replace(cfg.task, name=task, **surface)  # the preset's vocabulary unless --scripts
        cfg.device = device
        if steps is not None:
            cfg.rl.iterations = steps
        if sft_steps is not None:
            cfg.sft.steps = sft_steps
        if lr is not None:
            cfg.rl.lr = lr
        if precision is not None:
            cfg.model.precision = precision
        if model is not None:
            cfg.model.path = model
        cfg.__post_init__()
        cfg.model.__post_init__()
        root = state(ctx).root()
        # everything that would refuse the run (device, store, an existing run, the checkpoint --resume needs, the
        # policy --init/--model name): one line now, not after a progress bar was drawn
        check_start(cfg, store=root, init=init, resume=resume)
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
        try:
            with Progress(*columns, disable=as_json, transient=False) as bar:
                job = bar.add_task(cfg.run, total=cfg.rl.iterations, info="SFT warm-up / setup…")

                def tick(it: int, rec: dict[str, float]) -> None:
                    info = f"H {rec[SAMPLER_ENTROPY]:.3f}  reward {rec[M.REWARD_MEAN]:.2f}"
                    if M.CONTROL_ZETA in rec:
                        info += f"  ζ {rec[M.CONTROL_ZETA]:.3g}"
                    if M.CONTROL_EPS_HIGH in rec:
                        info += f"  ε_high {rec[M.CONTROL_EPS_HIGH]:.3g}"
                    bar.update(job, completed=it + 1, info=info)

                res = train(cfg, store=root, init=init, resume=resume, on_iteration=tick)
        except KeyboardInterrupt as stop:  # after the progress bar let go of the terminal
            fail(_train_interrupted(stop, cfg, root, resume), prefix="interrupted", code=130)
        ev0, ev1 = res.evals[0][1], res.evals[-1][1]
        summary = {
            "run": res.run,
            "store": str(root),
            "h0": res.h0,
            "eval_start": ev0,
            "eval_end": ev1,
            "hook_errors": res.hook_errors,
            "policy": str(res.policy_dir) if res.policy_dir else None,
            "tokens_per_sec": res.tokens_per_sec,
        }
        if as_json:
            echo_json(summary)
            return
        from entropy_watch.trainer.evaluate import EVAL_DISTINCT, EVAL_ENTROPY

        echo(
            f"{res.run}: H {ev0[EVAL_ENTROPY]:.3f} -> {ev1[EVAL_ENTROPY]:.3f} nats "
            f"(x{ev1[EVAL_ENTROPY] / ev0[EVAL_ENTROPY]:.2f}), pass@1 {ev0[M.pass_at_k(1)]:.2f} -> "
            f"{ev1[M.pass_at_k(1)]:.2f}, distinct correct {ev0[EVAL_DISTINCT]:.1f} -> {ev1[EVAL_DISTINCT]:.1f}; "
            f"store {root}"
        )

    @app.command("compare")
    def compare_cmd(
        ctx: typer.Context,
        algos: str = typer.Option(
            "grpo,dapo,repo-r,adapo", "--algos", callback=_algos, help="Comma-separated algorithms."
        ),
        preset_name: str = typer.Option(
            "tiny", "--preset", "-p", callback=_one_of(PRESETS, "preset"), help="tiny or gpu."
        ),
        seed: int = typer.Option(0, "--seed", min=0, help="Single seed (ignored when --seeds is given)."),
        seeds: str = typer.Option(
            None, "--seeds", callback=_seeds, help="Comma-separated seeds, e.g. 0,1,2 (mean ± std)."
        ),
        steps: int = typer.Option(
            None, "--steps", "-n", min=1, help="RL iterations per algorithm (default: preset's)."
        ),
        sft_steps: int = typer.Option(None, "--sft-steps", min=0, help="SFT warm-up steps (default: preset's)."),
        probe_steps: int = typer.Option(100, "--probe-steps", min=0, help="Task-B GRPO iterations (0 = no probe)."),
        jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Processes in parallel (one torch thread each)."),
        lr: float = typer.Option(
            None, "--lr", callback=positive, help="RL learning rate for every algorithm (default: preset's)."
        ),
        epochs: int = typer.Option(None, "--epochs", min=1, help="Passes over each rollout batch (default: preset's)."),
        minibatches: int = typer.Option(
            None, "--minibatches", min=1, help="Optimizer steps per epoch (default: preset's)."
        ),
        precision_check: bool = typer.Option(
            True,
            "--precision-check/--no-precision-check",
            help="Also train GRPO in bf16-fp32head and bf16-naive for the whole run (ratio bias, log-prob gap).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print rows and summary as JSON."),
    ) -> None:
        """Train each algorithm from the same SFT checkpoint and seed; print the entropy/diversity table."""
        _require_trainer()
        from rich.console import Console

        from entropy_watch.trainer.compare import ComparisonInterrupted, ProbeConfig, compare, format_table

        seed_list = [int(x) for x in seeds.split(",") if x.strip()] if seeds else [seed]
        rl = {k: v for k, v in (("lr", lr), ("epochs", epochs), ("minibatches", minibatches)) if v is not None}
        base = preset(preset_name).rl
        for key, value in rl.items():  # each override against the preset's batch, before anything trains
            _flag_value(f"--{key}", value, functools.partial(dataclasses.replace, base, **{key: value}))
        root = state(ctx).root()
        try:
            result = compare(
                preset_name,
                [a.strip() for a in algos.split(",") if a.strip()],
                seed_list,
                root,
                iterations=steps,
                sft_steps=sft_steps,
                probe=ProbeConfig(iterations=probe_steps),
                jobs=jobs,
                precision=precision_check,
                rl=rl,
            )
        except ComparisonInterrupted as stop:
            fail(_comparison_interrupted(stop.runs, root), prefix="interrupted", code=130)
        except KeyboardInterrupt:  # before any worker started
            fail("compare stopped before its first run started; nothing was logged", prefix="interrupted", code=130)
        if as_json:
            echo_json(result)
            return
        import sys

        console = Console(width=None if sys.stdout.isatty() else 160)  # piped output: do not squeeze the table
        console.print(format_table(result))
        if result["precision"]:
            console.print(format_table(result, "precision"))
