"""A local uncased BERT WordPiece tokenizer for the offline (synthetic) SQuAD data.

No hub download: the vocabulary is the special tokens, then every lower-cased word and
punctuation mark of the datasets' contexts and questions (split by BERT's own basic
tokenizer rules), plus single characters and their ``##`` continuations so that an unseen
word still tokenizes without ``[UNK]``. The result is a fast tokenizer, as the QA
preprocessing needs offsets mappings and overflowing tokens.
"""

from __future__ import annotations

import os
import string
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers.pre_tokenizers import BertPreTokenizer
from transformers import PreTrainedTokenizerFast
from transformers.models.bert.tokenization_bert import BertTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCAB_FILE = "vocab.txt"
_CHARACTERS = string.ascii_lowercase + string.digits + string.punctuation


def _texts(datasets: Sequence[list[dict[str, Any]]]) -> Iterable[str]:
    for data in datasets:
        for article in data:
            for paragraph in article["paragraphs"]:
                yield paragraph["context"]
                for qa in paragraph["qas"]:
                    yield qa["question"]


def build_vocab(datasets: Sequence[list[dict[str, Any]]]) -> list[str]:
    """Special tokens first, then the sorted words, characters and ``##`` characters."""
    pre_tokenizer = BertPreTokenizer()
    tokens = {f"##{c}" for c in _CHARACTERS} | set(_CHARACTERS)
    for text in _texts(datasets):
        tokens.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text.lower()))
    tokens.difference_update(SPECIAL_TOKENS)
    return [*SPECIAL_TOKENS, *sorted(tokens)]


def _load(directory: Path) -> PreTrainedTokenizerFast:
    tokenizer = BertTokenizerFast.from_pretrained(str(directory))
    if not tokenizer.is_fast:  # pragma: no cover - transformers always gives a fast one here
        raise TypeError(f"{directory} did not load as a fast tokenizer")
    return tokenizer


def build_tokenizer(
    datasets: Sequence[list[dict[str, Any]]], directory: Path
) -> PreTrainedTokenizerFast:
    """The tokenizer for ``datasets``, saved in (or, if already there, loaded from) directory.

    ``directory`` holds ``vocab.txt`` plus the ``save_pretrained`` files. A directory whose
    ``vocab.txt`` equals the vocabulary computed here is reused as is; otherwise it is
    (re)written, with ``vocab.txt`` replaced last so a concurrent reader that sees the
    matching vocabulary also sees the matching tokenizer files.
    """
    directory = Path(directory)
    vocab = build_vocab(datasets)
    text = "\n".join(vocab) + "\n"
    vocab_path = directory / VOCAB_FILE
    if vocab_path.is_file() and vocab_path.read_text(encoding="utf-8") == text:
        try:
            return _load(directory)
        except (OSError, ValueError):
            pass  # a broken or partial save: rebuild it below
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as tmp:
        staging = Path(tmp)
        (staging / VOCAB_FILE).write_text(text, encoding="utf-8")
        tokenizer = BertTokenizerFast(vocab=str(staging / VOCAB_FILE), do_lower_case=True)
        tokenizer.save_pretrained(str(staging / "saved"))
        for saved in sorted((staging / "saved").iterdir()):
            if saved.name != VOCAB_FILE:
                os.replace(saved, directory / saved.name)
        os.replace(staging / VOCAB_FILE, vocab_path)
    return _load(directory)
