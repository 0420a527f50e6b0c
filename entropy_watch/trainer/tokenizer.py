"""The trainer's tiny tokenizer, built in code: one token per character, 15 tokens, a real HF fast tokenizer.

It is a ``transformers.PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model with a one-character
pre-tokenizer, so ``save_pretrained``/``AutoTokenizer.from_pretrained`` round-trip and ``--model PATH`` treats it
like any other tokenizer. Vocabulary (ALGORITHMS.md scale notes): ``<eos>`` (also the padding token), the digits,
``S``, ``=``, ``>`` and ``+``.
"""

from __future__ import annotations

from typing import Any

from entropy_watch.errors import ConfigError

EOS = "<eos>"
SYMBOLS: tuple[str, ...] = tuple("0123456789") + ("S", "=", ">", "+")


def build_tokenizer() -> Any:
    """A ``PreTrainedTokenizerFast``: ids ``<eos>``=0, ``0``..``9``=1..10, ``S``=11, ``=``=12, ``>``=13, ``+``=14."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((EOS, *SYMBOLS))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=None))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # every character is a token
    core.decoder = decoders.Fuse()  # join characters back without spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=EOS)


def load_tokenizer(path: str) -> Any:
    """The tokenizer saved next to a local model; a missing pad token falls back to the end token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.eos_token_id is None:
        raise ConfigError(f"the tokenizer in {path} has no eos token; the trainer needs one to end completions")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
