"""OpenRLHF: hooks/openrlhf.py against the real ``PolicyLoss`` and ``Actor`` of OpenRLHF 0.11.2 (``make setup``
installs it with --no-deps), called as ``PPOActor.training_step`` calls them (openrlhf/trainer/ray/ppo_actor.py).

``import openrlhf.models`` needs flash_attn (its ``__init__`` imports ``actor``, whose ``ring_attn_utils`` imports
``flash_attn.bert_padding``) and ``openrlhf/models/utils.py`` imports deepspeed at the top; neither is used on the
paths tested here (no sample packing, no ZeRO-3). Where they are not installed, empty stand-in modules take their place
while the real files ``openrlhf/models/loss.py``, ``utils.py`` and ``actor.py`` are imported (``openrlhf.models`` as a
bare package over its real folder), and are removed from ``sys.modules`` afterwards."""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
import types

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store

pytestmark = pytest.mark.slow

_STAND_INS = {
    "deepspeed": {},
    "flash_attn": {},
    "flash_attn.bert_padding": dict.fromkeys(("index_first_axis", "pad_input", "rearrange", "unpad_input")),
    "flash_attn.utils": {},
    "flash_attn.utils.distributed": {"all_gather": None},
}


@contextlib.contextmanager
def _openrlhf_models():
    """The real ``openrlhf.models`` submodules importable for the block, without its package ``__init__``."""
    spec = importlib.util.find_spec("openrlhf")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "openrlhf is not installed (make setup installs openrlhf==0.11.2 with --no-deps)", allow_module_level=True
        )
    added = []
    for name, attrs in _STAND_INS.items():
        top = name.split(".")[0]
        if name in sys.modules or (top == name and importlib.util.find_spec(name) is not None):
            continue
        if top != name and top not in added:
            continue  # the real package is installed
        mod = types.ModuleType(name, "entropy_watch tests: stands in for a package OpenRLHF imports, never run here")
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.__dict__.update(attrs)
        sys.modules[name] = added.append(name) or mod
    if "openrlhf.models" not in sys.modules:
        pkg = types.ModuleType("openrlhf.models")
        pkg.__path__ = [f"{spec.submodule_search_locations[0]}/models"]
        pkg.__spec__ = importlib.machinery.ModuleSpec("openrlhf.models", None, is_package=True)
        sys.modules["openrlhf.models"] = pkg
        added.append("openrlhf.models")
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


with _openrlhf_models():
    loss_module = importlib.import_module("openrlhf.models.loss")
    actor_module = importlib.import_module("openrlhf.models.actor")
PolicyLoss, Actor = loss_module.PolicyLoss, actor_module.Actor


@pytest.fixture
def watch(tmp_path, monkeypatch):
    from entropy_watch.hooks import openrlhf
    from entropy_watch.hooks.watch import Watch

    monkeypatch.setattr(PolicyLoss, "forward", PolicyLoss.forward)  # the class-level wraps, undone after the test
    monkeypatch.setattr(Actor, "forward", Actor.forward)
    openrlhf.wrap_policy_loss(PolicyLoss)
    openrlhf.wrap_actor(Actor)
    w = Watch("orl", store=str(tmp_path / "store"), strict=True, flush_secs=0.05, vocab_size=64, reduce=False)
    openrlhf.set_watch(w)
    yield w
    openrlhf.set_watch(None)
    w.close()


def _batch(seed=0, B=8, A=6, spread=0.6):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, A, generator=g) * 2
    new = old + spread * torch.randn(B, A, generator=g)
    rollout = old + spread * torch.randn(B, A, generator=g)
    adv = torch.randn(B, 1, generator=g).expand(B, A).contiguous()
    mask = torch.ones(B, A)
    mask[0, 4:] = 0
    mask[3, 2:] = 0
    return new, old, rollout, adv, mask


def _scalars(tmp_path, *names):
    store = Store(tmp_path / "store")
    return {n: store.series("orl", n)[1].tolist() for n in names}


def _reference(loss, new, old, rollout, adv, mask):
    """The unwrapped forward: what OpenRLHF returns without the hook."""
    orig = PolicyLoss.forward.__wrapped__
    return orig(loss, new, old, adv, action_mask=mask, rollout_log_probs=rollout, dp_size=1, batch_num_tokens=None,
                global_batch_size=None)  # fmt: skip


def test_real_ppo_policy_loss_returns_unchanged_and_its_clip_ratio_splits(watch, tmp_path):
    loss = PolicyLoss(clip_eps_low=0.2, clip_eps_high=0.28, dual_clip=3.0, token_level_loss=True)
    new, old, rollout, adv, mask = _batch()
    # PPOActor.training_step's call
    out = loss(new, old, adv, action_mask=mask, rollout_log_probs=None, dp_size=1, batch_num_tokens=float(mask.sum()),
               global_batch_size=None)  # fmt: skip
    expected = _reference(loss, new, old, None, adv, mask)
    assert len(out) == 5 and all(
        (a is None and b is None) or torch.equal(a, b) for a, b in zip(out[:3], expected[:3], strict=True)
    )
    watch.flush()
    got = _scalars(tmp_path, M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.CLIP_REGION_FRAC)
    ratio = torch.exp(new - old)
    n = float(mask.sum())
    low = float((((ratio < 0.8) & (adv < 0)).float() * mask).sum() / n)
    high = float((((ratio > 1.28) & (adv > 0)).float() * mask).sum() / n)
    assert low > 0 and high > 0
    assert got[M.CLIP_LOW_FRAC] == pytest.approx([low]) and got[M.CLIP_HIGH_FRAC] == pytest.approx([high])
    assert got[M.CLIP_REGION_FRAC][0] == pytest.approx(float(out[1]), abs=1e-6)  # OpenRLHF's ppo_clip_ratio


@pytest.mark.parametrize("level", ["token", "seq"])
def test_real_gspo_with_is_correction_clips_against_the_rollout_log_probs(watch, tmp_path, level):
    """OpenRLHF 0.11 ``--actor.policy_loss_type gspo`` with ``--algo.advantage.is_correction_level``: the sequence
    ratio is taken against ``rollout_log_probs`` (0.11 has no ``enable_vllm_is_correction``; the hook read that flag
    and split a clip ratio OpenRLHF never computed)."""
    loss = PolicyLoss(clip_eps_low=0.05, clip_eps_high=0.05, policy_loss_type="gspo", is_correction_level=level,
                      is_correction_threshold=(0.01, 100.0))  # fmt: skip
    new, old, rollout, adv, mask = _batch(seed=3, spread=0.8)
    out = loss(new, old, adv, action_mask=mask, rollout_log_probs=rollout)
    watch.flush()
    got = _scalars(tmp_path, M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.CLIP_REGION_FRAC)
    seq = ((new - rollout) * mask).sum(-1) / mask.sum(-1)  # GSPO's sequence log-ratio, written out
    ratio = seq.exp()[:, None].expand_as(new)
    n = float(mask.sum())
    low = float((((ratio < 0.95) & (adv < 0)).float() * mask).sum() / n)
    high = float((((ratio > 1.05) & (adv > 0)).float() * mask).sum() / n)
    assert 0 < low + high < 1
    assert got[M.CLIP_LOW_FRAC] == pytest.approx([low]) and got[M.CLIP_HIGH_FRAC] == pytest.approx([high])
    assert got[M.CLIP_REGION_FRAC][0] == pytest.approx(float(out[1]), abs=1e-6)  # OpenRLHF's ppo_clip_ratio


class _TinyLM(torch.nn.Module):
    """A causal LM's interface as ``Actor.forward`` calls it: ``model(ids, attention_mask=, position_ids=)`` returning
    a Hugging Face ``ModelOutput`` with ``logits`` (a dict whose ``.get("entropy")`` stays None)."""

    def __init__(self, vocab=64, dim=8) -> None:
        super().__init__()
        self.embed, self.head = torch.nn.Embedding(vocab, dim), torch.nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        from transformers.modeling_outputs import CausalLMOutputWithPast

        h = self.embed(input_ids).cumsum(1) / position_ids.clamp(min=0)[..., None].add(1)
        return CausalLMOutputWithPast(logits=self.head(h))


def _tiny_actor():
    torch.manual_seed(0)
    actor = Actor(_TinyLM())
    actor.packing_samples = False  # set only on the from_pretrained path (a model path), which OpenRLHF always takes
    return actor


def test_real_actor_entropy_reaches_the_next_policy_loss(watch, tmp_path):
    """``Actor.forward(..., return_output=True, return_entropy=True)`` sets ``output.entropy`` (B, T-1); the wrap hands
    it to the next ``PolicyLoss`` call, which records the entropy of the action tokens."""
    actor = _tiny_actor()
    actor.train()
    B, P, A = 4, 3, 5
    g = torch.Generator().manual_seed(1)
    sequences = torch.randint(0, 64, (B, P + A), generator=g)
    attention_mask = torch.ones(B, P + A, dtype=torch.long)
    action_mask = torch.ones(B, A)
    action_mask[1, 3:] = 0
    # OpenRLHF's compute_entropy is @torch.compile'd: run eagerly (an inductor build on CPU takes seconds, and a C++
    # compiler); the formula is the same
    with torch.compiler.set_stance("force_eager"):
        log_probs, output = actor(sequences, action_mask, attention_mask=attention_mask, return_output=True,
                                  return_entropy=True)  # fmt: skip
    assert output.entropy.shape == (B, P + A - 1)
    old = log_probs.detach() + 0.1 * torch.randn(B, A, generator=g)
    adv = torch.randn(B, 1, generator=g).expand(B, A)
    PolicyLoss()(log_probs, old, adv, action_mask=action_mask, rollout_log_probs=None)
    watch.flush()
    with torch.no_grad():  # reference: the entropy of the model's own logits over the action tokens
        position_ids = attention_mask.cumsum(-1) - 1
        lp = torch.log_softmax(actor.model(sequences, attention_mask=attention_mask, position_ids=position_ids)
                               .logits.float(), -1)[:, :-1][:, -A:]  # fmt: skip
        ent = -(lp.exp() * lp).sum(-1)
    expected = float((ent * action_mask).sum() / action_mask.sum())
    got = _scalars(tmp_path, M.ENTROPY_MEAN)[M.ENTROPY_MEAN]
    assert got == pytest.approx([expected], rel=1e-4)
    hist = Store(tmp_path / "store").table("orl", "hist").to_pydict()
    assert sum(hist["count"]) == int(action_mask.sum())
