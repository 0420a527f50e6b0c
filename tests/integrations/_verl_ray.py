"""verl in the tests without Ray: the stand-in driver (:func:`stand_in_driver`), and Ray for verl's imports. verl's
modules import ``ray`` at the top (``verl/protocol.py``, for ``DataProtoFuture``'s ``ray.ObjectRef``) but nothing the
tests run calls it, and ``make setup`` leaves Ray out. Where it is not installed, :func:`ray_if_missing` puts an empty
stand-in in ``sys.modules`` for a block and removes it after."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any


def _ray_stand_in() -> types.ModuleType:
    ray = types.ModuleType("ray", "entropy_watch tests: stands in for Ray, which verl imports, never run here")
    ray.__spec__ = importlib.machinery.ModuleSpec("ray", None)
    ray.ObjectRef = type("ObjectRef", (), {})
    return ray


@contextlib.contextmanager
def ray_if_missing() -> Iterator[None]:
    """``ray`` in ``sys.modules`` for the block: Ray where installed, else the stand-in (removed after the block)."""
    if "ray" in sys.modules or importlib.util.find_spec("ray") is not None or importlib.util.find_spec("verl") is None:
        yield
        return
    stand_in = sys.modules["ray"] = _ray_stand_in()
    try:
        yield
    finally:
        if sys.modules.get("ray") is stand_in:
            del sys.modules["ray"]


def stand_in_driver(
    logits: Any, entropys: Callable[[Any, Any], Any] | None = None, global_steps: int = 0
) -> tuple[type, types.SimpleNamespace]:
    """verl 0.9.1's driver seams that the wraps touch (``test_verl.py`` checks them against ``ray_trainer.py``; the
    real module needs Ray and the serving stack): ``(RayPPOTrainer, module)``. ``_compute_old_log_prob`` returns the
    log-probs of ``logits (B, L, V)`` at the batch's responses and the per-token entropies (``entropys(lp, logp)``
    instead, where given: ``lp`` the log-softmax, ``logp`` the gathered log-probs); the module's ``compute_advantage``
    is verl's GRPO estimator."""
    import torch
    from verl import DataProto
    from verl.trainer.ppo import core_algos

    class RayPPOTrainer:
        def _compute_old_log_prob(self, batch: DataProto) -> tuple[DataProto, float]:
            lp = torch.log_softmax(logits, -1)
            logp = lp.gather(-1, batch.batch["responses"][..., None]).squeeze(-1)
            ent = -(lp.exp() * lp).sum(-1) if entropys is None else entropys(lp, logp)
            return DataProto.from_dict(tensors={"old_log_probs": logp, "entropys": ent}), 0.0

    RayPPOTrainer.global_steps = global_steps  # type: ignore[attr-defined]

    def compute_advantage(data, adv_estimator, gamma=1.0, lam=1.0, num_repeat=1, norm_adv_by_std_in_grpo=True,
                          config=None):  # type: ignore[no-untyped-def]  # fmt: skip
        adv, ret = core_algos.compute_grpo_outcome_advantage(
            data.batch["token_level_rewards"], data.batch["response_mask"], data.non_tensor_batch["uid"]
        )
        data.batch["advantages"], data.batch["returns"] = adv, ret
        return data

    return RayPPOTrainer, types.SimpleNamespace(RayPPOTrainer=RayPPOTrainer, compute_advantage=compute_advantage)


SCORES = (1.0, 0, 1, 1, 0, 0, 1, 0)
"""The outcome reward of each of 8 responses (two GRPO groups of 4, uids "a" and "b")."""


def teed_driver(
    monkeypatch: Any, tmp_path: Any, logits: Any, entropys: Callable[[Any, Any], Any] | None = None
) -> tuple[Any, types.SimpleNamespace, Any]:
    """The stand-in driver wrapped by ``hooks/verl.py`` and verl's real ``Tracking`` teed, logging to
    ``tmp_path/verl.jsonl``: ``(trainer, module, tracking)``. ``Tracking`` is restored after the test."""
    from verl.utils.tracking import Tracking

    from entropy_watch.hooks import verl as ew_verl

    monkeypatch.setattr(Tracking, "__init__", Tracking.__init__)
    monkeypatch.setattr(Tracking, "log", Tracking.log)
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "verl.jsonl"))
    driver, module = stand_in_driver(logits, entropys)
    ew_verl.wrap_driver(driver, module)
    ew_verl.install_tracking_tee()
    return driver(), module, Tracking("proj", "exp", default_backend=["file"])


def grpo_batch(responses: Any, mask: Any) -> Any:
    """A verl ``DataProto`` of 8 responses ``(8, L)`` with their mask and :data:`SCORES` at the first token."""
    import numpy as np
    import torch
    from verl import DataProto

    scores = torch.zeros(mask.shape)
    scores[:, 0] = torch.tensor(SCORES)
    return DataProto.from_dict(
        tensors={"responses": responses, "response_mask": mask, "token_level_rewards": scores},
        non_tensors={"uid": np.array(["a"] * 4 + ["b"] * 4, dtype=object)},
    )
