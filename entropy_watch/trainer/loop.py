"""THE training loop: rollout -> reward -> advantage -> mini-batch/epoch update -> controllers -> log -> eval -> save.

    from entropy_watch.trainer.config import preset
    from entropy_watch.trainer.loop import train
    result = train(preset("tiny", "repo-r", seed=0))      # or: entropy-watch train --algo repo-r --preset tiny

Reads top to bottom like cleanrl's ``ppo.py``: the algorithm is a handful of config switches (``config.ALGOS``)
selecting pure functions from ``algorithms.py``. Token statistics go through ``entropy_watch.hooks.Watch``; they are
those of every loss forward of the iteration (all epochs x mini-batches, as TRL averages its ``entropy`` and
``clip_ratio/*`` over the loss forwards of a step): entropy of the policy being updated, ratios against the sampler's
log-probs, so ``clip/high_frac`` is the share of token updates whose upper clip bound. The first mini-batch precedes
any update of the iteration, so its mean log-ratio is the trainer-vs-sampler precision gap (logged as
``ratio/log_mean_first_minibatch`` next to ``precision/logp_gap_*``).
Every ``rl.pred_dh_every`` iterations ``entropy_drift.py`` logs the update's first-order predicted entropy change
(``cov/pred_dH``) next to the change observed on the same rollout batch (``entropy/delta_observed``).
Checkpoints hold everything needed to continue the same trajectory bit for bit (weights, optimizer, controllers,
random generators); resuming writes a ``resume`` event. Ctrl-C closes the run as ``interrupted`` (any other exception:
``failed``) and raises :class:`TrainingInterrupted`, which says where it stopped and where ``resume`` would continue.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from entropy_watch import metrics as M
from entropy_watch.errors import ConfigError
from entropy_watch.hooks import Watch, token_entropy
from entropy_watch.store.layout import CHECKPOINTS_DIR, run_dir
from entropy_watch.trainer import algorithms as alg
from entropy_watch.trainer.checkpoint import (
    check_writable,
    find_policy,
    latest_checkpoint,
    load_checkpoint,
    load_policy,
    save_checkpoint,
)
from entropy_watch.trainer.config import AlgoConfig, TrainConfig, local_store
from entropy_watch.trainer.entropy_drift import begin_probe, finish_probe
from entropy_watch.trainer.evaluate import evaluate
from entropy_watch.trainer.model import build_model, n_params, token_logp
from entropy_watch.trainer.rollout import Rollout, completion_forward, sample
from entropy_watch.trainer.sft import run_sft
from entropy_watch.trainer.tasks import get_task
from entropy_watch.trainer.tokenizer import build_tokenizer

# Per-token tensors of every loss forward that update_policy hands to Watch.log_tokens.
LOGGED = ("entropy", "logp", "old_logp", "adv", "mask", "group_ids", "token_ids")
# Trainer-specific scalars (the canonical ones come from entropy_watch.metrics).
LOSS = "loss/policy"
GRAD_NORM = "train/grad_norm"
KEPT_FRAC = "train/kept_frac"  # share of sequences kept by dynamic sampling
RATIO_LOG_MEAN_FIRST = "ratio/log_mean_first_minibatch"  # signed trainer-vs-sampler gap before any update
SAMPLER_ENTROPY = "entropy/sampler_mean"  # mean entropy of the sampling policy over the whole batch
TOKENS_PER_SEC = "perf/tokens_per_sec"
# Mean centred log-prob L = logp + H of the tokens whose upper clip bound this iteration (algorithms.clip_high_lever):
# < 0 means widening eps_high (ADAPO, DAPO's clip-higher) frees entropy-raising updates, > 0 entropy-lowering ones.
CLIP_HIGH_LEVER = "clip/high_centred_logp"


@dataclass
class Controls:
    """Controller state, updated once per iteration (``algorithms.*_update``)."""

    target: float = float("nan")
    zeta: float = 0.0
    eps_high: float = 0.2
    entropy_coef: float = 0.0


@dataclass
class TrainResult:
    """What a run produced: per-iteration records, evaluations, the measured H_0 and where the policy was saved."""

    run: str
    h0: float
    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    policy_dir: Path | None = None
    hook_errors: int = 0
    n_params: int = 0
    tokens_per_sec: float = float("nan")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train`, raised once the run was closed as ``interrupted`` (a KeyboardInterrupt still).

    ``step``: the iteration under way (its rows may be partly logged); ``checkpoint``: the iteration the run's latest
    checkpoint continues from with ``resume=True``, None when it has none.
    """

    def __init__(self, run: str, step: int, checkpoint: int | None) -> None:
        super().__init__(run, step, checkpoint)  # every field in args: it pickles (compare's worker processes)
        self.run, self.step, self.checkpoint = run, step, checkpoint

    def __str__(self) -> str:
        return f"run {self.run!r} interrupted at step {self.step}"


# What a resume may change: how long and where it runs, not what it trains (``config_changes``). ``model.path`` is
# where the first session loaded its starting policy; a resume loads the checkpoint's, so the folder's spelling
# (relative or absolute, another machine's mount) names nothing a resume uses.
RESUMABLE_CHANGES = frozenset({"rl.iterations", "device", "threads", "checkpoint_every", "log_every", "model.path"})


def config_changes(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``"field: old -> new"`` for every leaf of the resolved config (``TrainConfig.to_dict``) that differs between a
    checkpoint and the resuming call, except :data:`RESUMABLE_CHANGES` and fields the checkpoint does not hold (a
    field a later version added: the checkpoint's run never had a say in it, and refusing would strand every run
    checkpointed before an upgrade)."""
    out = []
    for key in sorted(saved.keys() | now.keys()):
        name, old, new = prefix + key, saved.get(key), now.get(key)
        if name in RESUMABLE_CHANGES or key not in saved:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            out += config_changes(old, new, name + ".")
        elif old != new and not (old != old and new != new):  # NaN equals NaN here
            out.append(f"{name}: {old!r} -> {new!r}")
    return out


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu. A device this torch cannot use is a :class:`ConfigError` naming it
    (one line at the CLI), not torch's assertion from deep inside ``model.to``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device {name!r}: {e}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ConfigError(f"device {name!r}: no CUDA device is available (torch {torch.__version__}, {built}); "
                              "use --device cpu or auto")  # fmt: skip
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: MPS is not available on this machine; use --device cpu or auto")
    return device


class Start(NamedTuple):
    """What :func:`check_start` resolved: the device, the store's root, the run's checkpoint folder and, when
    resuming, the checkpoint's state."""

    device: torch.device
    root: Path
    ckpt_dir: Path
    state: dict[str, Any] | None


def check_start(
    cfg: TrainConfig, *, store: str | Path | None = None, init: str | Path | None = None, resume: bool = False
) -> Start:
    """Every check :func:`train` makes before it works, and nothing else: loads no model, writes nothing, so a caller
    (the CLI, before it draws its progress bar) learns at once what would refuse the run.

    :class:`ConfigError`: a device this torch cannot use, an object store, ``init`` with ``resume``, a run that already
    exists (without ``resume``), a checkpoint trained with another configuration or past ``cfg.rl.iterations``.
    :class:`~entropy_watch.trainer.checkpoint.CheckpointError`: ``resume`` without a checkpoint, an ``init`` or
    ``cfg.model.path`` folder holding no model. :class:`~entropy_watch.errors.StoreUnwritable`: a store where no file
    can be written (full or read-only disk; probed with one block, removed at once: nothing is left behind).
    """
    device = pick_device(cfg.device)
    root = local_store(store)  # checkpoints and the policy are files in the run's folder: never an object store
    if resume and init is not None:  # the checkpoint's policy would win and init be silently ignored
        raise ConfigError("init starts a new run from a policy and resume continues the run's checkpoint: give one")
    ckpt_dir = run_dir(root, cfg.run) / CHECKPOINTS_DIR
    state = load_checkpoint(ckpt_dir) if resume else None
    if not resume and run_dir(root, cfg.run).exists():  # a second training appended to the first: mixed steps
        resumable = latest_checkpoint(ckpt_dir) is not None  # a run stopped before its first checkpoint has none
        how = "pass --resume to continue it, or" if resumable else "it has no checkpoint to resume:"
        raise ConfigError(
            f"run {cfg.run!r} already exists in {root}; {how} name another run with --run (or remove the old one)"
        )
    if state is not None and state.get("config") is not None:  # the same run, not another algorithm on its state
        changed = config_changes(state["config"], cfg.to_dict())
        if changed:
            raise ConfigError(
                f"run {cfg.run!r} was trained with another configuration ({'; '.join(changed)}); resume it with the "
                "flags it was started with (only the step count, device, threads, checkpoint/log intervals and where "
                "--model's folder lies may change), or train a new run with --run"
            )
    if state is not None and state["iteration"] > cfg.rl.iterations:  # would "finish" at once, reporting a later step
        raise ConfigError(
            f"run {cfg.run!r} has a checkpoint at step {state['iteration']}, past the {cfg.rl.iterations} steps asked "
            f"for; resume with --steps {state['iteration']} or more"
        )
    if state is None:  # the policy a new run starts from: a folder that holds one (resume loads the checkpoint's)
        for folder in (init, cfg.model.path):
            if folder is not None:
                find_policy(folder)
                break
    check_writable(ckpt_dir, store=root)  # a full or read-only store, before the SFT warm-up rather than after it
    return Start(device, root, ckpt_dir, state)


def train(
    cfg: TrainConfig,
    *,
    store: str | Path | None = None,
    init: str | Path | None = None,
    resume: bool = False,
    strict_hooks: bool = False,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Run SFT warm-up (unless ``init`` or resuming) and ``cfg.rl.iterations`` RL iterations; log to the store.

    ``init``: a policy directory (or a checkpoint directory holding ``policy/``) to start from instead of SFT.
    ``resume``: continue the run's own latest checkpoint. ``on_iteration(it, record)`` is called after each
    iteration (progress bars; an exception there stops the run after the iteration's checkpoint, if one was due).
    Once the run is in the store, Ctrl-C closes it as ``interrupted`` and raises :class:`TrainingInterrupted`; any other
    exception closes it as ``failed`` and propagates. Before that (setup, SFT warm-up) Ctrl-C propagates unchanged and
    a new run has written nothing yet.
    """
    # ---- setup ------------------------------------------------------------------------------------------------
    torch.set_num_threads(cfg.threads)
    a, rl, prec, task = cfg.algo_cfg, cfg.rl, cfg.model.precision, get_task(cfg.task.name)
    device, root, ckpt_dir, state = check_start(cfg, store=store, init=init, resume=resume)
    if state is not None:
        model, tokenizer = load_policy(ckpt_dir / "latest" / "policy")
    elif init is not None:
        model, tokenizer = load_policy(init)
    elif cfg.model.path is not None:
        model, tokenizer = load_policy(cfg.model.path)
    else:
        tokenizer = build_tokenizer(cfg.task.scripts, cfg.task.plus_signs)
        model = build_model(cfg.model, len(tokenizer), tokenizer.eos_token_id, cfg.seed)
    if a.target_entropy is not None and a.target_entropy >= math.log(len(tokenizer)):  # before the SFT warm-up
        raise ConfigError(
            f"target_entropy={a.target_entropy!r} nats is at or above ln V = {math.log(len(tokenizer)):.4g} "
            f"(V = {len(tokenizer)}), the entropy of a uniform policy: no policy reaches it (bits instead of nats?)"
        )
    model.to(device).train()
    sft_losses: list[float] = []
    if state is None and init is None and cfg.sft.steps > 0:
        sft_losses = run_sft(model, tokenizer, task, cfg.sft, cfg.seed, prec, surface=cfg.task.surface())
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if a.kl_coef > 0 else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=rl.lr, weight_decay=0.0)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)  # rollout sampling and mini-batch shuffles
    cpu_gen = torch.Generator().manual_seed(cfg.seed + 1)  # Clip-Cov's random token picks
    rng = np.random.default_rng(cfg.seed)  # prompt targets
    ctl = Controls(zeta=a.zeta0 if a.repo else 0.0, eps_high=a.eps_high, entropy_coef=a.entropy_coef)
    result = TrainResult(run=cfg.run, h0=float("nan"), n_params=n_params(model))
    start = 0
    if state is not None:
        start = state["iteration"]
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ref_model is not None:
            ref_model.load_state_dict(state["ref_model"])
        gen.set_state(state["gen"])
        cpu_gen.set_state(state["cpu_gen"])
        rng.bit_generator.state = state["rng"]
        ctl = Controls(**state["controls"])
        result.h0, result.history, result.evals = state["h0"], state["history"], state["evals"]
    if a.target_entropy is not None:
        ctl.target = a.target_entropy
    watch = Watch(
        cfg.run,
        store=root,
        config=cfg.to_dict(),
        strict=strict_hooks,
        vocab_size=len(tokenizer),
        temperature=rl.temperature,
        framework="entropy_watch.trainer",
        seed=cfg.seed,
        async_stats=False,  # log_tokens returns the step's statistics, kept in the history (clip fractions)
    )
    it, saved = start, (start if state is not None else None)  # saved: the iteration the latest checkpoint holds
    try:
        if state is not None:
            watch.event(start, "resume", from_iteration=start, checkpoint=str(ckpt_dir / "latest"))
        elif sft_losses:
            watch.event(0, "sft", steps=len(sft_losses), final_loss=sft_losses[-1])
        ev_kwargs = {"max_new_tokens": cfg.task.max_new_tokens, "temperature": rl.temperature, "precision": prec}
        if start == 0:
            result.evals.append((0, evaluate(model, tokenizer, task, cfg.eval, **ev_kwargs)))
            watch.log_dict(0, result.evals[-1][1])

        for it in range(start, rl.iterations):
            t0 = time.perf_counter()
            # ---- 1. rollout: G samples per prompt with the sampler's log-probs and entropies -------------------
            targets = task.sample_targets(rng, rl.prompts)
            ro = sample(
                model, tokenizer, [task.prompt(s) for s in targets], rl.group_size,
                cfg.task.max_new_tokens, rl.temperature, prec, gen,
            )  # fmt: skip
            n_tokens = float(ro.mask.sum())
            batch_entropy = float((ro.entropy * ro.mask).sum() / max(n_tokens, 1.0))
            if np.isnan(ctl.target):  # H_0: the entropy of the first rollout batch, before any update
                ctl.target = batch_entropy
            if np.isnan(result.h0):
                result.h0 = batch_entropy

            # ---- 2. reward ---------------------------------------------------------------------------------------
            seq_targets = np.repeat(targets, rl.group_size)
            rewards = torch.tensor([task.reward(int(s), t) for s, t in zip(seq_targets, ro.texts, strict=True)])

            # ---- 3. advantage (+ DAPO dynamic sampling) ----------------------------------------------------------
            adv = alg.ADVANTAGES[a.advantage](rewards, rl.group_size).to(device)
            keep = alg.informative_groups(rewards, rl.group_size) if a.dynamic_sampling else torch.ones_like(rewards)
            kept = keep.bool().nonzero().squeeze(-1).to(device)

            # ---- 4. update: epochs x mini-batches of the clipped surrogate ---------------------------------------
            # every pred_dh_every iterations: g_H and theta before, predicted vs observed entropy change after
            probe_args = (model, ro, prec, rl.temperature, rl.minibatches)
            probe = begin_probe(*probe_args) if rl.pred_dh_every and it % rl.pred_dh_every == 0 else None
            logged = update_policy(model, ref_model, optimizer, ro.select(kept), adv[kept], a, ctl, cfg, gen, cpu_gen)
            drift: dict[str, float] = {}
            if probe is not None:
                drift[M.COV_PRED_DH], drift[M.ENTROPY_DELTA_OBS] = finish_probe(probe, *probe_args)

            # ---- 5. controllers (once per iteration, on the sampling policy's batch entropy) ---------------------
            if a.controller == "zeta":
                ctl.zeta = alg.zeta_update(ctl.zeta, batch_entropy, ctl.target, a.zeta_min, a.zeta_max)
            elif a.controller == "adapo":
                ctl.eps_high = alg.adapo_update(
                    ctl.eps_high, batch_entropy, ctl.target, a.adapo_kappa, a.adapo_eps_min, a.adapo_eps_max
                )
            elif a.controller == "entropy":
                ctl.entropy_coef = alg.entropy_coef_update(
                    ctl.entropy_coef, batch_entropy, ctl.target, a.entropy_coef_delta, a.entropy_coef_max
                )

            # ---- 6. log: token statistics through Watch, then the trainer's scalars ------------------------------
            token_stats: dict[str, float] = {}
            if it % cfg.log_every == 0:
                if logged is not None:
                    token_stats = watch.log_tokens(
                        it, entropy=logged["entropy"], mask=logged["mask"], logp=logged["logp"],
                        old_logp=logged["old_logp"], advantages=logged["adv"], group_ids=logged["group_ids"],
                        eps_low=a.eps_low, eps_high=logged["eps_high"], token_ids=logged["token_ids"],
                        tokenizer=tokenizer,
                    )  # fmt: skip
                else:  # every group dropped: entropy of the sampler only
                    token_stats = watch.log_tokens(
                        it, entropy=ro.entropy, mask=ro.mask, advantages=adv, group_ids=ro.group_ids
                    )
            record = {
                M.REWARD_MEAN: float(rewards.mean()),
                M.REWARD_STD: float(rewards.std()),
                M.LENGTH_MEAN: float(ro.lengths.mean()),
                M.LENGTH_TRUNC_FRAC: float(ro.truncated.float().mean()),
                SAMPLER_ENTROPY: batch_entropy,
                KEPT_FRAC: len(kept) / len(rewards),
                TOKENS_PER_SEC: n_tokens / (time.perf_counter() - t0),
            }
            # control/* is what a controller steers (its lever, its cap and target), as the hooks log it: a setting that
            # never moves (DAPO's eps_high, a fixed bonus) is in run.json, and logged as control/* it read as a
            # controller to advice ("a controller holds entropy already") and to `show` on plain GRPO
            if a.repo:
                record[M.CONTROL_ZETA] = ctl.zeta
            if a.controller == "zeta":
                record[M.CONTROL_ZETA_MAX] = a.zeta_max  # the cap beside the lever, as the hooks log it
            if a.controller:  # its target and the entropy it compared with it (the sampler's, as SAMPLER_ENTROPY)
                record[M.CONTROL_TARGET], record[M.CONTROL_ENTROPY] = ctl.target, batch_entropy
            if a.controller == "adapo":
                record[M.CONTROL_EPS_HIGH], record[M.CONTROL_EPS_MAX] = ctl.eps_high, a.adapo_eps_max
            if a.controller == "entropy":
                record[M.CONTROL_ENTROPY_COEF] = ctl.entropy_coef
            if logged is not None:
                record.update(logged["scalars"])
            record.update(drift)
            watch.log_dict(it, record)
            result.history.append({"iteration": it, **token_stats, **record})

            # ---- 7. periodic evaluation (own generator: never shifts the training trajectory) --------------------
            done = it + 1
            if done == rl.iterations or (cfg.eval.every and done % cfg.eval.every == 0):
                result.evals.append((done, evaluate(model, tokenizer, task, cfg.eval, **ev_kwargs)))
                watch.log_dict(done, result.evals[-1][1])

            # ---- 8. checkpoint ---------------------------------------------------------------------------------
            if done == rl.iterations or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
                save_checkpoint(
                    ckpt_dir, model, tokenizer,
                    {
                        "iteration": done, "optimizer": optimizer.state_dict(), "gen": gen.get_state(),
                        "cpu_gen": cpu_gen.get_state(), "rng": rng.bit_generator.state, "controls": vars(ctl).copy(),
                        "h0": result.h0, "history": result.history, "evals": result.evals, "config": cfg.to_dict(),
                        "ref_model": None if ref_model is None else ref_model.state_dict(),
                    },
                )  # fmt: skip
                saved = done
            if on_iteration is not None:
                on_iteration(it, record)
    except KeyboardInterrupt as exc:  # Ctrl-C: stopped on purpose, nothing broke; what was logged stays
        watch.close("interrupted")
        raise TrainingInterrupted(cfg.run, it, saved) from exc
    except BaseException:
        watch.close("failed")
        raise
    watch.close("finished")
    result.hook_errors = watch.errors
    last = latest_checkpoint(ckpt_dir)
    result.policy_dir = last / "policy" if last is not None else None
    rates = [h[TOKENS_PER_SEC] for h in result.history]
    result.tokens_per_sec = float(np.mean(rates)) if rates else float("nan")
    return result


def update_policy(
    model: torch.nn.Module,
    ref_model: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    batch: Rollout,
    adv: torch.Tensor,
    a: AlgoConfig,
    ctl: Controls,
    cfg: TrainConfig,
    gen: torch.Generator,
    cpu_gen: torch.Generator,
) -> dict[str, Any] | None:
    """``cfg.rl.epochs`` passes of ``cfg.rl.minibatches`` optimizer steps over ``batch``; ``adv (n,)`` per sequence.

    Returns the per-token tensors of every loss forward of the iteration (all epochs and mini-batches, concatenated
    along the batch: :data:`LOGGED`, the advantages being those fed to the surrogate) and the update's scalars, or
    None when the batch is empty (every group dropped).
    """
    n, prec, agg = batch.completion.shape[0], cfg.model.precision, alg.AGGREGATIONS[a.aggregation]
    if n == 0:
        return None
    seen: dict[str, list[torch.Tensor]] = {k: [] for k in LOGGED}  # every loss forward, every epoch
    losses, norms, first_gap = [], [], None
    for _epoch in range(cfg.rl.epochs):
        order = torch.randperm(n, generator=gen, device=gen.device).to(adv.device)
        for idx in order.tensor_split(min(cfg.rl.minibatches, n)):
            mb = batch.select(idx)
            logits, mask = completion_forward(model, mb, prec, cfg.rl.temperature)
            logp = token_logp(logits, mb.completion, prec)  # (B, C) with grad
            bonus = a.entropy_coef > 0 or a.controller == "entropy"
            ent = token_entropy(logits) if bonus else token_entropy(logits.detach())  # (B, C) nats
            # REPO: replace the advantage, keep the surrogate (Petrenko et al. 2026)
            A = adv[idx].unsqueeze(-1).expand_as(logp)
            if a.repo:
                L = alg.centred_logp(logp, ent, a.centering)
                if a.repo == "r":
                    A = alg.repo_r_advantages(A, L, ctl.zeta)
                else:
                    A = alg.repo_d_advantages(A, L, ctl.zeta, alg.repo_d_beta(A, logp, L, mask))
            # surrogate: clipped (with Clip-Cov detaching) or KL-Cov
            if a.kl_cov_frac > 0:
                loss_tok, _ = alg.kl_cov_loss(logp, mb.logp, A, mask, a.kl_cov_frac, a.kl_cov_coef)
            else:
                loss_tok, low, high = alg.clipped_surrogate(logp, mb.logp, A, a.eps_low, ctl.eps_high)
                if a.clip_cov_ratio > 0:
                    cov = alg.token_covariance(A, logp, mask)
                    pick = alg.clip_cov_select(cov, mask, low | high, a.clip_cov_ratio, a.clip_cov_bounds, cpu_gen)
                    loss_tok = torch.where(pick, loss_tok.detach(), loss_tok)
            if a.top_entropy_frac < 1.0:  # 80/20: PG term only on the highest-entropy tokens
                loss_tok = loss_tok * alg.top_entropy_mask(ent, mask, a.top_entropy_frac)
            loss = agg(loss_tok, mask)
            if ref_model is not None:  # k3 KL to the initial policy
                with torch.no_grad():
                    ref_logits, _ = completion_forward(ref_model, mb, prec, cfg.rl.temperature)
                loss = loss + a.kl_coef * agg(alg.k3_kl(logp, token_logp(ref_logits, mb.completion, prec)), mask)
            if bonus and ctl.entropy_coef > 0 and (a.controller != "entropy" or _mean(ent, mask) <= ctl.target):
                loss = loss - ctl.entropy_coef * agg(ent, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip = cfg.rl.grad_clip if cfg.rl.grad_clip > 0 else float("inf")
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)))
            optimizer.step()
            losses.append(float(loss.detach()))
            for k, v in zip(LOGGED, (ent, logp, mb.logp, A, mask, mb.group_ids, mb.completion), strict=True):
                seen[k].append(v.detach())
            if first_gap is None:  # first mini-batch: no update yet in this iteration
                first_gap = ((logp.detach() - mb.logp) * mask, mask)
    gap, gmask = first_gap
    valid = gmask > 0
    logged = {k: torch.cat(v) for k, v in seen.items()}
    lever = alg.clip_high_lever(
        logged["logp"], logged["old_logp"], logged["entropy"], logged["adv"], logged["mask"], ctl.eps_high
    )
    scalars = {
        LOSS: float(np.mean(losses)),
        GRAD_NORM: float(np.mean(norms)),
        RATIO_LOG_MEAN_FIRST: float(gap[valid].mean()),
        M.PRECISION_LOGP_GAP_MEAN: float(gap[valid].abs().mean()),
        M.PRECISION_LOGP_GAP_MAX: float(gap[valid].abs().max()),
    }
    if lever == lever:  # NaN when the upper clip bound nowhere: not logged
        scalars[CLIP_HIGH_LEVER] = lever
    return {**logged, "eps_high": ctl.eps_high, "scalars": scalars}


def _mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float((x.detach() * mask).sum() / mask.sum().clamp(min=1.0))
