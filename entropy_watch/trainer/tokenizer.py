"""The trainer's tiny tokenizer, built in code: one token per character, a real HF fast tokenizer.

It is a ``transformers.PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model with a one-character
pre-tokenizer, so ``save_pretrained``/``AutoTokenizer.from_pretrained`` round-trip and ``--model PATH`` treats it
like any other tokenizer. Vocabulary (ALGORITHMS.md scale notes): ``<eos>`` (also the padding token), the digits,
``S``, ``=``, ``>`` and ``+`` (15 tokens), then, with ``scripts > 1``, the digits 0-9 of further numeral scripts
(:data:`NUMERAL_SCRIPTS`: fullwidth, Arabic-Indic, Devanagari, ...), 10 tokens each. Every one of them is a Unicode
decimal digit (category Nd), so ``int()`` and the regex ``\\d`` read them: a digit written in another script is a
synonym, a different token for the same answer. That gives the vocabulary the long tail of rarely used tokens an LLM
vocabulary has (``tasks.py``: the warm-up data writes digits in a Zipf distribution over scripts).
"""

from __future__ import annotations

from typing import Any

from entropy_watch.errors import ConfigError

EOS = "<eos>"
SYMBOLS: tuple[str, ...] = tuple("0123456789") + ("S", "=", ">", "+")
# (name, code point of its digit zero): each script's digits 0-9 are consecutive code points, all category Nd.
NUMERAL_SCRIPTS: tuple[tuple[str, int], ...] = (
    ("ascii", 0x30),
    ("fullwidth", 0xFF10),
    ("arabic-indic", 0x660),
    ("extended-arabic-indic", 0x6F0),
    ("devanagari", 0x966),
    ("bengali", 0x9E6),
    ("thai", 0xE50),
    ("gurmukhi", 0xA66),
    ("gujarati", 0xAE6),
    ("oriya", 0xB66),
    ("tamil", 0xBE6),
    ("telugu", 0xC66),
    ("kannada", 0xCE6),
    ("malayalam", 0xD66),
    ("lao", 0xED0),
    ("tibetan", 0xF20),
    ("myanmar", 0x1040),
    ("khmer", 0x17E0),
    ("mongolian", 0x1810),
)
# Signs that read as "+": the separator's synonyms (ASCII first).
PLUS_SIGNS: str = "+\uff0b\ufe62\u207a\u208a\u2795\u2214\u2295\u229e\u29fa\u2a01\u2a39"  # + ＋ ﹢ ⁺ ₊ ➕ ∔ ⊕ ⊞ ⧺ ⨁ ⨹


def script_digits(script: int) -> str:
    """The ten digit characters 0-9 of :data:`NUMERAL_SCRIPTS` ``[script]`` (0 is ASCII)."""
    if not 0 <= script < len(NUMERAL_SCRIPTS):
        raise ConfigError(f"numeral script {script}; the tokenizer knows 0..{len(NUMERAL_SCRIPTS) - 1}")
    zero = NUMERAL_SCRIPTS[script][1]
    return "".join(chr(zero + d) for d in range(10))


def answer_characters(scripts: int = 1, plus_signs: int = 1) -> str:
    """Every character an answer may use with ``scripts`` numeral scripts and ``plus_signs`` signs for ``+``: the
    digits of each script (ASCII first), then the plus signs (``+`` first)."""
    if not 1 <= plus_signs <= len(PLUS_SIGNS):
        raise ConfigError(f"plus_signs={plus_signs}; the tokenizer knows {len(PLUS_SIGNS)}")
    return "".join(script_digits(k) for k in range(scripts)) + PLUS_SIGNS[:plus_signs]


def build_tokenizer(scripts: int = 1, plus_signs: int = 1) -> Any:
    """A ``PreTrainedTokenizerFast``: ids ``<eos>``=0, ``0``..``9``=1..10, ``S``=11, ``=``=12, ``>``=13, ``+``=14,
    then the digits of scripts 1..``scripts``-1 (10 ids each, 15 + 10*(k-1) + d for digit d of script k), then
    :data:`PLUS_SIGNS` 1..``plus_signs``-1."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    extra = [c for c in answer_characters(scripts, plus_signs) if c not in SYMBOLS]  # ASCII ids stay 1..14
    vocab = {tok: i for i, tok in enumerate((EOS, *SYMBOLS, *extra))}
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
