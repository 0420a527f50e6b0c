"""Advice: an alert's suggested actions in the run's own trainer's words, computed once in the analysis.

:data:`~entropy_watch.analysis.alert.ACTIONS` are the generic lines ("raise the upper clip bound (clip-higher, e.g.
eps_high 0.28)"). A run whose trainer is known — ``run.json``'s ``framework``, and the settings its hook stored (TRL:
``trl_config`` and ``training_args``; verl: its ``config``'s ``actor_rollout_ref`` and ``algorithm``; the reference
trainer: its ``config``; an attached controller: ``control``) — gets each line as that trainer's config key with its
current value ("TRL: epsilon_high is 0.2 (= epsilon); try GRPOConfig(epsilon_high=0.28) (clip-higher, DAPO)"), and
loses the lines it already follows (clip-higher at 0.28, REPO-R or ADAPO attached, Clip-Cov / KL-Cov, dynamic
sampling, an entropy bonus on, log-probs from an fp32 head) — read from its settings and from the ``control/*``
series logged up to the alert's step (causal: a live prefix and the whole run advise the same). A run of unknown
origin (an imported CSV, a plain loop) keeps the generic lines.

Key names are the installed libraries' own (TRL 1.16 ``GRPOConfig``/``RLOOConfig``, verl 0.9.1's
``ppo_trainer.yaml``, OpenRLHF 0.11.2's ``train_ppo_ray`` flags; docs/integrations.md). OpenRLHF before 0.10.2 takes
flat flags (``--eps_clip_low_high``, ``--entropy_loss_coef``...): a run known to be one (its stored OpenRLHF version,
else the spelling of its own command line) is told those, one of unknown release both (:func:`_openrlhf_spelling`).
The CLI, the report, the app and the notifications render ``alert.actions`` and never recompute them.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.aliases import OPENRLHF_FLAT_FLAGS, OPENRLHF_FLAT_SINCE
from entropy_watch.analysis.alert import ACTIONS, Alert

if TYPE_CHECKING:
    from entropy_watch.analysis.series import RunSeries

CLIP_HIGHER = 0.28  # DAPO's eps_high (Yu et al. 2025); TRL's GRPOConfig help recommends it too
FACTS_KEY = "run_facts"  # the series meta key :func:`run_facts` is kept under (``analysis_meta``)
AT_CAP = 0.99  # a controller's lever at 99% of its cap or more is at it (the controller clips it there)
PINNED_POINTS = 5  # logged lever values in a row at the cap before :func:`pinned_note` (one is a pass through it)

SLOTS: dict[str, tuple[str, ...]] = {
    "collapse": ("clip_higher", "entropy_update", "entropy_bonus", "lower_lr", "fp32"),
    "explosion": ("lr_or_grad_clip", "less_bonus", "low_clip", "kl_penalty", "rewards"),
    "precision": ("fp32", "sampler"),
    "zero_variance_groups": ("dynamic_sampling", "group_size"),
    "nonfinite": ("inspect", "fp32"),
}
"""What each generic line of ``ACTIONS[kind]`` is about, in its order (a kind not here keeps its lines)."""

# run.json keys -> the facts' names, per source (TRL: trl_config wins over training_args: it holds the trainer's
# resolved epsilon_low/epsilon_high)
_TRL_KEYS = {
    "epsilon": "eps_low", "epsilon_low": "eps_low", "epsilon_high": "eps_high", "delta": "delta", "beta": "beta",
    "entropy_coef": "entropy_coef", "use_adaptive_entropy": "adaptive_entropy", "entropy_target": "entropy_target",
    "learning_rate": "lr", "max_grad_norm": "max_grad_norm", "cast_lm_head_to_fp32": "fp32_head",
    "loss_type": "loss_type", "num_generations": "group_size", "temperature": "temperature",
}  # fmt: skip
_AR = ("actor_rollout_ref", "actor")
_VERL_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (  # a verl config (ppo_trainer.yaml's paths), when stored
    ((*_AR, "clip_ratio"), "eps_low"), ((*_AR, "clip_ratio"), "eps_high"),  # what a null clip_ratio_low/_high reads
    ((*_AR, "clip_ratio_low"), "eps_low"), ((*_AR, "clip_ratio_high"), "eps_high"),  # later paths win
    ((*_AR, "entropy_coeff"), "entropy_coef"), ((*_AR, "optim", "lr"), "lr"), ((*_AR, "grad_clip"), "max_grad_norm"),
    ((*_AR, "policy_loss", "loss_mode"), "loss_mode"), ((*_AR, "use_kl_loss"), "kl_loss"),
    ((*_AR, "kl_loss_coef"), "kl_loss_coef"), (("actor_rollout_ref", "rollout", "n"), "group_size"),
    (("actor_rollout_ref", "rollout", "temperature"), "temperature"),
    (("algorithm", "filter_groups", "enable"), "dynamic_sampling"), (("algorithm", "use_kl_in_reward"), "kl_in_reward"),
    (("algorithm", "kl_ctrl", "kl_coef"), "kl_reward_coef"),
)  # fmt: skip
_OPENRLHF_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (  # hooks/openrlhf.py run_args: 0.11.2's flags, nested
    (("actor", "eps_clip"), "eps_low"), (("actor", "eps_clip"), "eps_high"),
    (("actor", "entropy_coef"), "entropy_coef"), (("actor", "adam", "lr"), "lr"),
    (("actor", "max_norm"), "max_grad_norm"), (("algo", "kl", "init_coef"), "beta"),
    (("algo", "kl", "use_loss"), "kl_loss"), (("algo", "dynamic_filtering_enable"), "dynamic_sampling"),
    (("rollout", "n_samples_per_prompt"), "group_size"), (("rollout", "temperature"), "temperature"),
)  # fmt: skip
_OPENRLHF_FLAT = {
    k: v for k, v in OPENRLHF_FLAT_FLAGS.items() if k.split(".")[-1] not in ("policy_loss_type", "estimator")
}
"""The flat flag OpenRLHF < 0.10.2 had for each dotted flag the advice names (of the one table,
:data:`~entropy_watch.aliases.OPENRLHF_FLAT_FLAGS`); ``--actor.muon.*`` and ``--actor.optim`` came with 0.10.2."""
OPENRLHF_DOTTED = (0, 10, 2)  # the first OpenRLHF whose train_ppo_ray takes --actor.*, --algo.*, --rollout.*
_DOTTED_FLAG = re.compile(r"--((?:actor|algo|rollout)(?:\.[a-z_]+)+)")
_VERL_COV = ("clip_cov", "kl_cov")  # verl's covariance-based entropy-preserving losses (Cui et al. 2025)
_TRAINER_KEYS = {  # entropy_watch.trainer's TrainConfig.to_dict()
    ("algo_cfg", "eps_low"): "eps_low", ("algo_cfg", "eps_high"): "eps_high", ("algo_cfg", "kl_coef"): "beta",
    ("algo_cfg", "entropy_coef"): "entropy_coef", ("algo_cfg", "zeta_max"): "zeta_max",
    ("algo_cfg", "adapo_eps_max"): "eps_max", ("algo_cfg", "dynamic_sampling"): "dynamic_sampling",
    ("algo_cfg", "controller"): "controller", ("algo_cfg", "repo"): "repo", ("rl", "lr"): "lr",
    ("rl", "grad_clip"): "max_grad_norm", ("rl", "group_size"): "group_size", ("rl", "temperature"): "temperature",
    ("algo_cfg", "clip_cov_ratio"): "clip_cov", ("algo_cfg", "kl_cov_frac"): "kl_cov",
    ("model", "precision"): "precision", ("algo",): "algo",
}  # fmt: skip
_FLAGS = ("adaptive_entropy", "fp32_head", "dynamic_sampling", "kl_loss", "kl_in_reward")
_TEXTS = ("loss_type", "loss_mode", "controller", "repo", "precision", "trainer", "algo", "flags", "release")


def run_facts(run_json: Mapping[str, Any]) -> dict[str, Any]:
    """What advice needs of a run's ``run.json`` (or an importer's meta): ``framework`` ("trl", "verl", "openrlhf",
    "trainer" for entropy_watch's reference trainer; absent when unknown), ``trainer`` (TRL's class) and the settings
    it stored, under plain names (``eps_low``, ``eps_high``, ``beta``, ``entropy_coef``, ``lr``...). Values that are
    not what the setting holds (a writer's string for a number) are left out: run.json is data any writer chose."""
    raw = run_json.get("framework")
    out: dict[str, Any] = {}
    name = raw.strip() if isinstance(raw, str) else ""
    if name == "trl" or name.startswith("trl."):
        out["framework"] = "trl"
        if name.startswith("trl."):
            out["trainer"] = name[4:]
        for src in (_dict(run_json.get("training_args")), _dict(run_json.get("trl_config"))):
            for key, fact in _TRL_KEYS.items():
                if key in src:
                    out[fact] = src[key]
        if out.get("eps_high") is None and "eps_low" in out:  # TRL: epsilon_high defaults to epsilon
            out["eps_high"] = out["eps_low"]
    elif name == "verl":
        out["framework"] = "verl"
        cfg = _dict(run_json.get("config"))
        out.update({fact: v for path, fact in _VERL_KEYS if (v := _at(cfg, path)) is not None})
        mode = out.get("loss_mode")
        if isinstance(mode, str) and mode.startswith("ew_") and mode != "ew_repo_r":
            out["loss_mode"] = mode[3:]  # hooks/verl.py's ew_<mode>: verl's <mode> with clip fractions logged
        if mode == "ew_repo_r":  # hooks/verl.py's REPO-R loss: the controller is on
            out["controller"] = "repo-r"
    elif name == "openrlhf":
        out["framework"] = "openrlhf"
        cfg = _dict(run_json.get("config"))
        out.update({fact: v for path, fact in _OPENRLHF_KEYS if (v := _at(cfg, path)) is not None})
        pair = _at(cfg, ("actor", "eps_clip_low_high"))
        if isinstance(pair, list) and len(pair) == 2:  # what the loss clips (eps_clip is its default)
            out["eps_low"], out["eps_high"] = pair
        if _at(cfg, ("actor", "optim")) == "muon":
            out["lr"] = _at(cfg, ("actor", "muon", "lr"))
        spelling = _openrlhf_flags(run_json)
        if spelling is not None:
            out["flags"] = spelling
        release = _openrlhf_release(run_json)
        if release is not None:
            out["release"] = ".".join(map(str, release))
    elif name == "entropy_watch.trainer":
        out["framework"] = "trainer"
        cfg = _dict(run_json.get("config"))
        out.update({fact: v for path, fact in _TRAINER_KEYS.items() if (v := _at(cfg, path)) is not None})
        if out.get("controller") == "":  # stated: none (Facts.controller reads no logged series as one then)
            out["controller"] = "none"
    control = _dict(run_json.get("control"))  # hooks.trl.attach(control=...): ControlConfig's fields
    if isinstance(control.get("kind"), str):
        kind = control["kind"]
        out["controller"] = control.get("using") if kind == "target" and isinstance(control.get("using"), str) else kind
        for key in ("zeta_max", "eps_max"):
            if key in control:
                out[key] = control[key]
    return _checked(out)


def _openrlhf_flags(run_json: Mapping[str, Any]) -> str | None:
    """How the run's OpenRLHF spells its flags, "dotted" (>= 0.10.2) or "flat", from run.json: the OpenRLHF version
    its Watch stored (``versions.openrlhf``; "?" where the package had no ``__version__``), else ``--actor.optim`` in
    its stored config (hooks/openrlhf.py keeps it; 0.10.2 added it, default "adam", with no flat form), else its own
    command line (``argv``) when it used one spelling only (a Ray worker's argv holds neither); None when unknown."""
    release = _openrlhf_release(run_json)
    if release is not None:
        return "dotted" if release >= OPENRLHF_DOTTED else "flat"
    if isinstance(_at(_dict(run_json.get("config")), ("actor", "optim")), str):
        return "dotted"
    argv = run_json.get("argv")
    flags = {a.split("=", 1)[0] for a in argv if isinstance(a, str)} if isinstance(argv, list) else set()
    dotted = any(_DOTTED_FLAG.fullmatch(a) for a in flags)
    flat = bool(flags & {f"--{x}" for x in _OPENRLHF_FLAT.values()})
    return ("dotted" if dotted else "flat") if dotted != flat else None


def _openrlhf_release(run_json: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """The run's OpenRLHF release (``versions.openrlhf``), None when not stored."""
    return _release(_dict(run_json.get("versions")).get("openrlhf"))


def _release(version: object) -> tuple[int, int, int] | None:
    """``"0.8.1.post1"`` -> ``(0, 8, 1)``; None for anything that does not start with three numbers."""
    got = re.match(r"(\d+)\.(\d+)\.(\d+)", version) if isinstance(version, str) else None
    return (int(got[1]), int(got[2]), int(got[3])) if got else None


def _dict(x: object) -> dict[str, Any]:
    return dict(x) if isinstance(x, Mapping) else {}


def _at(d: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return d


def _checked(facts: dict[str, Any]) -> dict[str, Any]:
    """``facts`` with each value of the kind its setting holds (a finite number >= 0, a bool, a string), else
    dropped."""
    out: dict[str, Any] = {}
    for k, v in facts.items():
        if k == "framework" or k in _TEXTS:
            ok = isinstance(v, str) and bool(v)
        elif k in _FLAGS:
            ok = isinstance(v, bool)
        else:  # every numeric setting here is >= 0: a negative one (a typo, a hostile run.json) is not known
            v = _number(v)
            ok = v is not None and v >= 0
        if ok:
            out[k] = v
    return out


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    try:
        x = float(v)
    except OverflowError:  # an int past float's range in a hand-edited (or hostile) run.json
        return None
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Facts:
    """What is known of the run at one alert's step: its settings (:func:`run_facts`) and the newest value of each
    ``control/*`` series logged at or before the step (name -> (step, value))."""

    settings: Mapping[str, Any]
    control: Mapping[str, tuple[int, float]]
    h_ref: float | None = None  # the alert's H_ref (nats), where it quotes one

    @property
    def framework(self) -> str | None:
        return self.settings.get("framework")

    def get(self, key: str) -> Any:
        return self.settings.get(key)

    def logged(self, name: str) -> tuple[int, float] | None:
        return self.control.get(name)

    @property
    def config_class(self) -> str:
        return "RLOOConfig" if self.get("trainer") == "RLOOTrainer" else "GRPOConfig"

    @property
    def rloo(self) -> bool:
        return self.get("trainer") == "RLOOTrainer"

    def controller(self) -> str | None:
        """The controller acting on the run, "repo-r", "adapo" or "entropy" (a bonus controller): what its stored
        settings state (the reference trainer's config, ``attach(control=...)``, verl's ``ew_repo_r``), else what
        its logged control series show (a controller attached mid-run states nothing before). Settings first: the
        reference trainer's earlier versions logged DAPO's fixed eps_high as ``control/eps_high``."""
        if "controller" not in self.settings:
            if self.logged(M.CONTROL_ZETA) is not None:
                return "repo-r"
            if self.logged(M.CONTROL_EPS_HIGH) is not None:
                return "adapo"
        c = self.get("controller")
        if c in ("repo-r", "zeta") or self.get("repo"):
            return "repo-r"
        return "adapo" if c == "adapo" else ("entropy" if c == "entropy" else None)

    def cap(self, name: str) -> float | None:
        """The cap of the controller's lever, "zeta_max" or "eps_max": as logged beside the lever (``control/<name>``,
        the one it met: verl's workers read theirs from their environment), else as the stored settings state it."""
        got = self.logged(f"control/{name}")
        cap = got[1] if got is not None else _number(self.get(name))
        return cap if cap is not None and math.isfinite(cap) and cap > 0 else None  # a cap is a width: > 0

    def bonus(self) -> float | None:
        """The entropy bonus's weight: logged (control/entropy_coef) at the step, else the stored setting."""
        got = self.logged(M.CONTROL_ENTROPY_COEF)
        return got[1] if got is not None else self.get("entropy_coef")


KEEP = "keep"  # a slot function's answer: the generic line stays


def _v(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _ref(f: Facts) -> str:
    """' (H_ref 1.01 nats)' where the alert quotes it."""
    return f" (H_ref {f.h_ref:.2f} nats)" if f.h_ref is not None else " (H_ref)"


# ---- one function per slot: a line in the run's trainer's words, None (the run already does it), or KEEP ----------
def _clip_higher(f: Facts) -> str | None:
    if f.controller() == "adapo":  # ADAPO moves eps_high itself: only its cap is the user's
        if (at := _at_cap(f, M.CONTROL_EPS_HIGH, "eps_max")) is not None:
            return f"ADAPO's eps_high is at its cap ({_v(at[1])}) at step {at[0]}: raise {_cap_key(f, 'eps_max')}"
        return None
    no_clip = f.get("loss_mode") == "sapo" or f.get("algo") == "no-upper-clip"  # verl's SAPO: soft gates, no clip
    if f.get("loss_type") in ("cispo", "sapo") or no_clip:  # no upper clip to widen
        return None
    lo, hi = f.get("eps_low"), f.get("eps_high")
    if hi is not None and hi >= CLIP_HIGHER - 1e-9:
        return None
    now = "" if hi is None else f"epsilon_high is {_v(hi)}" + (" (= epsilon)" if hi == lo else f" (epsilon {_v(lo)})")
    if f.framework == "trl":
        said = f"TRL: {now}; try" if now else "TRL: set"
        return f"{said} {f.config_class}(epsilon_high={CLIP_HIGHER}) (clip-higher, DAPO; it defaults to epsilon)"
    if f.framework == "verl":
        now = "" if hi is None else f" (now {_v(hi)})"
        return f"verl: actor_rollout_ref.actor.clip_ratio_high={CLIP_HIGHER}{now} (clip-higher, DAPO; default 0.2)"
    if f.framework == "openrlhf":
        now = "" if hi is None else f"now {_v(lo if lo is not None else hi)} {_v(hi)}; "
        return (f"OpenRLHF: --actor.eps_clip_low_high {_v(lo) if lo is not None else 0.2} {CLIP_HIGHER} ({now}"
                "clip-higher, DAPO; both sides default to --actor.eps_clip 0.2)")  # fmt: skip
    if f.framework == "trainer":
        now = "" if hi is None else f" (eps_high is {_v(hi)})"
        return f"entropy-watch train --algo dapo{now}: clip-higher at eps_high {CLIP_HIGHER}"
    return KEEP


def _at_cap(f: Facts, lever: str, cap_name: str) -> tuple[int, float] | None:
    """``(step, cap)`` when the lever's newest logged value (``control/zeta`` or ``control/eps_high``) is at its cap
    (:data:`AT_CAP`), else None (no value, no known cap)."""
    got, cap = f.logged(lever), f.cap(cap_name)
    return (got[0], cap) if got is not None and cap is not None and abs(got[1]) >= AT_CAP * cap else None


def _cap_key(f: Facts, cap: str) -> str:
    """Where the user sets the controller's ``cap`` ("eps_max" or "zeta_max"): ``entropy-watch train``'s flag for the
    reference trainer, the environment variable verl's ``ew_repo_r`` reads in each worker, else
    ``attach(control=ControlConfig(...))``'s field."""
    if f.framework == "trainer":
        return f"--{cap.replace('_', '-')}"
    if f.framework == "verl" and cap == "zeta_max":  # hooks/verl.py's repo_controller
        return "$ENTROPY_WATCH_REPO_ZETA_MAX in every worker's environment"
    return f"ControlConfig({cap}=...)"


def pinned_note(series: RunSeries) -> str | None:
    """A note when the run's entropy controller has sat at its cap for its last :data:`PINNED_POINTS` logged values
    (ADAPO's eps_high at ``eps_max``, REPO-R's |ζ| at ``zeta_max``): it pushes entropy as far as it may, so the run's
    entropy is no longer held at the controller's target, with or without an alert (the reference trainer's tiny
    ADAPO sat at eps_max 1 from step 19 of 400 while entropy fell to 32% of its target: "ok", and nothing said why).
    None when no cap is known (logged beside the lever, ``control/eps_max`` / ``control/zeta_max``, or stated in the
    settings: the trainer's config, ``attach(control=...)``'s ``ControlConfig``). Causal: reads the series as given
    (a live prefix and the whole run agree)."""
    for name, cap_name, lever in ((M.CONTROL_EPS_HIGH, "eps_max", "ADAPO's eps_high"),
                                  (M.CONTROL_ZETA, "zeta_max", "REPO's |zeta|")):  # fmt: skip
        if name not in series.scalars:
            continue
        steps, values = series.scalars[name]
        ok = np.isfinite(values)
        steps, values = steps[ok], values[ok]
        if values.size < PINNED_POINTS:
            continue
        f = Facts(facts_of(series.meta), _newest(_control_series(series), int(steps[-1])))
        cap = f.cap(cap_name)
        if cap is None:
            continue
        at = np.abs(values) >= AT_CAP * cap
        if not at[-PINNED_POINTS:].all():
            continue
        off = np.flatnonzero(~at)
        since = int(steps[off[-1] + 1] if off.size else steps[0])
        up = name == M.CONTROL_EPS_HIGH or values[-1] > 0  # a negative zeta pushes entropy down
        said = f"{lever} has sat at its cap ({cap:g}) since step {since}: the controller pushes entropy "
        said += "up" if up else "down"
        target = f.logged(M.CONTROL_TARGET)
        aim = f" (entropy target {target[1]:.3g})" if target else ""  # the level: the headline's
        said += f" as far as it may and no longer holds it at its target{aim}; "
        if name == M.CONTROL_ZETA:
            return said + f"raise {_cap_key(f, cap_name)} to let it"
        return said + _wider_clip(series, int(steps[-1])) + f"raise {_cap_key(f, cap_name)}, or {_repo_r_way(f)}"
    return None


def _wider_clip(series: RunSeries, step: int) -> str:
    """What a wider upper clip could still free, from the clip-high share at the cap: the lever has no authority
    where it binds on almost no token (the reference trainer's tiny ADAPO: 0.2% at eps_high 1, and no fixed eps_high
    up to no clip at all kept more than 0.39 H_0; README "ADAPO does not hold entropy here"). "" when not logged."""
    if M.CLIP_HIGH_FRAC not in series.scalars:
        return ""
    steps, values = series.scalars[M.CLIP_HIGH_FRAC]
    last = values[: int(np.searchsorted(steps, step, side="right"))]
    last = last[np.isfinite(last)][-PINNED_POINTS:]
    if not last.size:
        return ""
    share = float(np.median(last))
    said = f"the upper clip now binds on {100 * share:.2g}% of tokens (median of its last {last.size} points)"
    return said + ", all a wider one could free: "


def _repo_r_way(f: Facts) -> str:
    """Holding entropy with REPO-R instead, in the run's trainer's words (ADAPO runs: the trainer, TRL's attach)."""
    if f.framework == "trainer":
        return "hold entropy with REPO-R (--algo repo-r)"
    if f.framework == "trl":
        return 'hold entropy with REPO-R (attach(trainer, control="repo-r"))'
    return "hold entropy with REPO-R"


def _entropy_update(f: Facts) -> str | None:
    ctl = f.controller()
    if ctl == "repo-r":  # attached: only its cap is the user's
        if (at := _at_cap(f, M.CONTROL_ZETA, "zeta_max")) is not None:
            return f"REPO's zeta is at its cap ({_v(at[1])}) at step {at[0]}: raise {_cap_key(f, 'zeta_max')}"
        return None
    if ctl == "adapo":  # ADAPO at its cap has run out of lever (pinned_note): REPO-R acts on the advantages instead
        at_cap = _at_cap(f, M.CONTROL_EPS_HIGH, "eps_max") is not None
        return f"ADAPO is at its cap: {_repo_r_way(f)}" if at_cap else None
    if (f.get("clip_cov") or 0) > 0 or (f.get("kl_cov") or 0) > 0 or f.get("loss_mode") in _VERL_COV:
        return None
    if f.framework == "trl":
        return ('TRL: attach REPO-R or ADAPO: entropy_watch.hooks.trl.attach(trainer, control="repo-r") '
                '(or control="adapo")')  # fmt: skip
    if f.framework == "verl":
        mode = f.get("loss_mode")
        key = "actor_rollout_ref.actor.policy_loss.loss_mode"
        key = f"{key} is {mode}; try " if mode else f"{key}="
        return (f"verl: {key}clip_cov or kl_cov (Clip-Cov / KL-Cov), or ew_repo_r "
                "(entropy_watch's REPO-R)")  # fmt: skip
    if f.framework == "trainer":
        return "entropy-watch train --algo repo-r (or --algo adapo): an entropy-preserving update"
    return KEEP


def _entropy_bonus(f: Facts) -> str | None:
    coef = f.bonus()
    if f.framework == "trl" and f.get("adaptive_entropy") is True:
        target = f.get("entropy_target")
        now = f" ({_v(target)} nats)" if target is not None else ""
        return (f"TRL: use_adaptive_entropy acts only at or below entropy_target{now}: raise entropy_target toward "
                f"the run's early entropy{_ref(f)}")  # fmt: skip
    on = coef is not None and coef > 0
    if f.controller() is not None and not on:
        return None  # a controller holds entropy already (the lines above speak of it)
    if f.framework == "trl":
        if f.rloo:
            return 'TRL: RLOOConfig has no entropy bonus; attach(trainer, control="target") holds entropy in a band'
        said = f"entropy_coef is {_v(coef)}; raise it" if on else "add an entropy bonus, GRPOConfig(entropy_coef=...)"
        if coef == 0:
            said = "entropy_coef is 0 (no entropy bonus); set GRPOConfig(entropy_coef=...)"
        return f"TRL: {said}, or use_adaptive_entropy=True with entropy_target near the run's early entropy{_ref(f)}"
    if f.framework == "verl":
        now = f"is {_v(coef)}; raise it" if on else "(default 0) adds an entropy bonus"
        if coef is not None and not on:
            now = f"is {_v(coef)} (no entropy bonus); set it above 0"
        return f"verl: actor_rollout_ref.actor.entropy_coeff {now}"
    if f.framework == "openrlhf":
        if on:
            return f"OpenRLHF: --actor.entropy_coef is {_v(coef)}; raise it"
        return "OpenRLHF: --actor.entropy_coef adds an entropy bonus (unset: none; 0 only logs entropy)"
    if f.framework == "trainer":
        if on:
            return f"entropy_coef is {_v(coef)}: raise it, or entropy-watch train --algo entropy-adaptive"
        return "entropy-watch train --algo entropy-bonus (entropy_coef 0.01) or --algo entropy-adaptive"
    return KEEP


def _lower_lr(f: Facts) -> str | None:
    lr = f.get("lr")
    if f.framework == "trl":
        return f"TRL: learning_rate is {_v(lr)}; try {_v(lr / 2)}" if lr else "TRL: lower learning_rate"
    if f.framework == "verl":
        return "verl: lower actor_rollout_ref.actor.optim.lr" + (f" (now {_v(lr)})" if lr else " (default 1e-6)")
    if f.framework == "openrlhf":
        muon = "" if f.get("flags") == "flat" else "; --actor.muon.lr with --actor.optim muon"  # Muon: 0.10.2 on
        return f"OpenRLHF: lower --actor.adam.lr (default 1e-6{muon})"
    if f.framework == "trainer" and lr:
        return f"entropy-watch train --lr {_v(lr / 2)}: a lower RL learning rate (rl.lr is {_v(lr)})"
    return KEEP


def _fp32(f: Facts) -> str | None:
    if f.get("fp32_head") is True or f.get("precision") in ("fp32", "bf16-fp32head"):
        return None  # log-probs already come from an fp32 head
    if f.framework == "trl" and not f.rloo:
        return ("TRL: GRPOConfig(cast_lm_head_to_fp32=True) computes log-probs from an fp32 LM head (needs untied "
                "embeddings)")  # fmt: skip
    if f.framework == "trainer" and f.get("precision") == "bf16":
        return "entropy-watch train --precision bf16-fp32head: log-probs from an fp32 LM head"
    return KEEP


def _lr_or_grad_clip(f: Facts) -> str | None:
    lr, clip = f.get("lr"), f.get("max_grad_norm")
    if f.framework == "trl":
        said = [f"learning_rate is {_v(lr)} (try {_v(lr / 2)})" if lr else "lower learning_rate"]
        said.append(f"max_grad_norm is {_v(clip)} (lower it)" if clip else "set max_grad_norm (gradient clipping)")
        return "TRL: " + "; ".join(said)
    if f.framework == "verl":
        return ("verl: lower actor_rollout_ref.actor.optim.lr, or actor_rollout_ref.actor.grad_clip" +
                (f" (now {_v(clip)})" if clip else " (default 1.0)"))  # fmt: skip
    if f.framework == "openrlhf":
        return "OpenRLHF: lower --actor.adam.lr (default 1e-6), or --actor.max_norm (gradient clipping, default 1.0)"
    return KEEP


def _less_bonus(f: Facts) -> str | None:
    target = f.logged(M.CONTROL_TARGET) if f.controller() is not None else None
    if target is not None:
        return f"check the entropy controller: its target was {_v(target[1])} nats at step {target[0]}"
    coef = f.bonus()
    if f.framework == "trl" and f.get("adaptive_entropy") is True:
        now = "" if f.get("entropy_target") is None else f" (now {_v(f.get('entropy_target'))})"
        return f"TRL: use_adaptive_entropy is on: lower entropy_target{now} or entropy_coef_max"
    if (coef is not None and coef <= 0 and f.controller() is None) or (f.rloo and coef is None):
        return None  # no bonus to lower (RLOOConfig has none)
    key = {"trl": "TRL: entropy_coef", "verl": "verl: actor_rollout_ref.actor.entropy_coeff",
           "openrlhf": "OpenRLHF: --actor.entropy_coef", "trainer": "entropy_coef"}.get(f.framework or "")  # fmt: skip
    if key is None:
        return KEEP
    return f"{key} is {_v(coef)}; lower it or set 0" if coef else f"{key} (the entropy bonus): lower it or set 0"


def _low_clip(f: Facts) -> str | None:
    lo, delta = f.get("eps_low"), f.get("delta")
    if f.framework == "trl":
        now = f" (now {_v(lo)})" if lo is not None else ""
        cap = f"delta is {_v(delta)}; lower it toward 1 + epsilon" if delta else "set delta (> 1 + epsilon, e.g. 4)"
        return f"TRL: tighten epsilon, the lower clip{now}; {cap}: caps the ratio of negative-advantage tokens"
    if f.framework == "verl":
        return ("verl: tighten actor_rollout_ref.actor.clip_ratio_low, or lower actor_rollout_ref.actor.clip_ratio_c "
                "(dual-clip, default 3.0)")  # fmt: skip
    if f.framework == "openrlhf":
        return "OpenRLHF: tighten the low side of --actor.eps_clip_low_high, or set --actor.dual_clip (e.g. 3)"
    return KEEP


def _kl_penalty(f: Facts) -> str | None:
    beta = f.get("beta")
    if f.framework == "trl":
        if beta:
            return f"TRL: beta (the KL penalty) is {_v(beta)}; raise it"
        now = "is 0.0 (no KL penalty)" if beta == 0 else "(the KL penalty, default 0.0)"
        return f"TRL: beta {now}; try {f.config_class}(beta=0.001) (DeepSeek-R1), which loads a reference model"
    if f.framework == "verl":
        return _verl_kl(f)
    if f.framework == "openrlhf":
        return "OpenRLHF: raise --algo.kl.init_coef (default 0.01), or --algo.kl.use_loss"
    if f.framework == "trainer" and beta is not None:
        return f"raise kl_coef, the KL penalty to the reference model (now {_v(beta)})"
    return KEEP


def _verl_kl(f: Facts) -> str:
    """verl's KL penalty: the one the run uses (its coefficient to raise), else how to turn one on."""
    loss, reward = f.get("kl_loss"), f.get("kl_in_reward")
    said = []
    if loss is True:
        coef = f.get("kl_loss_coef")
        said.append("actor_rollout_ref.actor.kl_loss_coef" + (f" is {_v(coef)}" if coef is not None else ""))
    if reward is True:
        coef = f.get("kl_reward_coef")
        said.append("algorithm.kl_ctrl.kl_coef" + (f" is {_v(coef)}" if coef is not None else ""))
    if said:
        return f"verl: the KL penalty {' and '.join(said)}; raise it"
    coef = f.get("kl_loss_coef")
    now = f"kl_loss_coef (now {_v(coef)})" if coef is not None else "kl_loss_coef (default 0.001)"
    off = "use_kl_loss is False; set " if loss is False else ""
    return f"verl: {off}actor_rollout_ref.actor.use_kl_loss=True with {now}, or algorithm.use_kl_in_reward=True"


def _dynamic_sampling(f: Facts) -> str | None:
    if f.get("dynamic_sampling") is True:
        return None
    if f.framework == "verl":
        return "verl: algorithm.filter_groups.enable=True (DAPO's dynamic sampling)"
    if f.framework == "openrlhf":
        return "OpenRLHF: --algo.dynamic_filtering_enable with --algo.dynamic_filtering_range (dynamic sampling)"
    if f.framework == "trainer":
        return "entropy-watch train --algo dapo (dynamic sampling)"
    return KEEP


def _group_size(f: Facts) -> str | None:
    n, t = f.get("group_size"), f.get("temperature")
    if f.framework == "trl":
        now = " and ".join(x for x in (n and f"num_generations is {_v(n)}", t and f"temperature is {_v(t)}") if x)
        return "TRL: raise num_generations or temperature" + (f" ({now})" if now else "")
    if f.framework == "verl":
        now = " and ".join(x for x in (n and f"n is {_v(n)}", t and f"temperature is {_v(t)}") if x)
        return "verl: raise actor_rollout_ref.rollout.n or actor_rollout_ref.rollout.temperature" + (
            f" ({now})" if now else ""
        )
    if f.framework == "openrlhf":
        return "OpenRLHF: raise --rollout.n_samples_per_prompt or --rollout.temperature"
    return KEEP


def _keep(f: Facts) -> str | None:
    return KEEP


_SLOT_FNS: dict[str, Callable[[Facts], str | None]] = {
    "clip_higher": _clip_higher, "entropy_update": _entropy_update, "entropy_bonus": _entropy_bonus,
    "lower_lr": _lower_lr, "fp32": _fp32, "lr_or_grad_clip": _lr_or_grad_clip, "less_bonus": _less_bonus,
    "low_clip": _low_clip, "kl_penalty": _kl_penalty, "rewards": _keep, "sampler": _keep,
    "dynamic_sampling": _dynamic_sampling, "group_size": _group_size, "inspect": _keep,
}  # fmt: skip


def actions(kind: str, facts: Facts) -> list[str]:
    """The suggested actions of an alert of ``kind`` for a run with ``facts``: each generic line of ``ACTIONS[kind]``
    in the run's trainer's words, without the ones it already follows."""
    generic = ACTIONS.get(kind, [])
    slots = SLOTS.get(kind)
    if slots is None:
        return list(generic)
    out: list[str] = []
    for line, slot in zip(generic, slots, strict=True):
        said = _SLOT_FNS[slot](facts)
        if facts.framework == "openrlhf" and said not in (None, KEEP):
            said = _openrlhf_spelling(facts, str(said))
        if said == KEEP:
            out.append(line)
        elif said is not None and said not in out:
            out.append(said)
    return out


def _openrlhf_spelling(f: Facts, line: str) -> str:
    """An OpenRLHF line (written with 0.10.2+'s dotted flags) in the run's release's words: as is where the run is
    known to take dotted flags, with the flat flags where it takes those (:data:`_OPENRLHF_FLAT`), and with the flat
    spellings added at its end where the release is not known (run.json stored neither version nor command line)."""
    spelling = f.get("flags")
    if spelling == "dotted":
        return line
    if spelling == "flat":
        flat = _DOTTED_FLAG.sub(lambda m: "--" + _OPENRLHF_FLAT.get(m[1], m[1]), line)
        return flat + _not_in_release(f.get("release"), _DOTTED_FLAG.findall(line))
    flat = list(dict.fromkeys(f"--{_OPENRLHF_FLAT[m]}" for m in _DOTTED_FLAG.findall(line) if m in _OPENRLHF_FLAT))
    return f"{line} (OpenRLHF < 0.10.2: {', '.join(flat)})" if flat else line


def _not_in_release(release: Any, names: list[str]) -> str:
    """ " (--dual_clip needs OpenRLHF >= 0.8.6; this run's is 0.8.5)": the flags ``names`` (dotted) whose flat form
    the run's known ``release`` does not take yet (:data:`~entropy_watch.aliases.OPENRLHF_FLAT_SINCE`); "" when it
    takes them all or the release is not known."""
    have = _release(release)
    if have is None:
        return ""
    late: dict[tuple[int, int, int], list[str]] = {}
    for name in dict.fromkeys(names):
        since = OPENRLHF_FLAT_SINCE.get(name)
        if since is not None and have < since:
            late.setdefault(since, []).append(f"--{_OPENRLHF_FLAT.get(name, name)}")
    said = [
        f"{' and '.join(flags)} need{'s' if len(flags) == 1 else ''} OpenRLHF >= {'.'.join(map(str, since))}"
        for since, flags in sorted(late.items())
    ]
    return f" ({'; '.join(said)}; this run's is {release})" if said else ""


def facts_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A series' settings: the :data:`FACTS_KEY` ``analysis_meta`` kept of its run.json, else read from ``meta``
    itself (an importer's meta, or a caller's, shaped as run.json)."""
    kept = meta.get(FACTS_KEY)
    return _checked(dict(kept)) if isinstance(kept, Mapping) else run_facts(meta)


_CONTROL = (M.CONTROL_ZETA, M.CONTROL_EPS_HIGH, M.CONTROL_ENTROPY_COEF, M.CONTROL_TARGET, M.CONTROL_ZETA_MAX,
            M.CONTROL_EPS_MAX)  # fmt: skip


def _control_series(series: RunSeries) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The run's logged ``control/*`` series advice reads (name -> (steps, values))."""
    return {name: series.scalars[name] for name in _CONTROL if name in series.scalars}


def advise(alerts: list[Alert], series: RunSeries) -> list[Alert]:
    """``alerts`` with their generic actions put in the run's trainer's words (:func:`actions`); an alert whose
    actions are not its kind's generic lines (a detector's own) is left as it is. Causal: each alert reads the
    control series up to its own step."""
    settings = facts_of(series.meta)
    logged = _control_series(series)
    if not settings and not logged:
        return alerts  # nothing known of the run: the generic lines
    out = []
    for a in alerts:
        if a.kind not in SLOTS or list(a.actions) != ACTIONS.get(a.kind):
            out.append(a)
            continue
        h_ref = _number(a.evidence.get("h_ref"))
        said = actions(a.kind, Facts(settings, _newest(logged, a.step), h_ref))
        out.append(a if said == list(a.actions) else replace(a, actions=said))
    return out


def _newest(logged: Mapping[str, tuple[np.ndarray, np.ndarray]], step: int) -> dict[str, tuple[int, float]]:
    """The newest finite value of each control series at or before ``step``."""
    out: dict[str, tuple[int, float]] = {}
    for name, (steps, values) in logged.items():
        k = int(np.searchsorted(steps, step, side="right"))
        ok = np.flatnonzero(np.isfinite(values[:k]))
        if ok.size:
            out[name] = (int(steps[ok[-1]]), float(values[ok[-1]]))
    return out
