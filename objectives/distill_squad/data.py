"""SQuAD 2.0 inputs: where questions come from, and their sliding-window features.

Three sources, one format (the official JSON ``data`` list): files by path, the hub
dataset ``squad_v2`` (when a hub is reachable), or the project's synthetic offline
default. Features are cached on disk keyed by tokenizer + data hash + settings, so the
trials of a study never tokenize twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from objectives.distill_squad import synthetic
from objectives.distill_squad.squad_eval import load_squad

FEATURES_VERSION = 1


@dataclass(frozen=True)
class Dataset:
    """Questions in the official format, and where they came from."""

    data: list[dict[str, Any]]
    identity: str
    """Path + sha256, hub id + revision, or the synthetic generator's id, seed and version."""
    sha256: str


def from_file(path: str | Path) -> Dataset:
    data, digest = load_squad(path)
    return Dataset(data, f"{Path(path).resolve()} sha256:{digest}", digest)


def from_synthetic(n_questions: int, seed: int, split: str) -> Dataset:
    train, evaluation = synthetic.generate_splits(
        n_train=n_questions if split == "train" else 1, n_eval=n_questions, seed=seed
    )
    data = train if split == "train" else evaluation
    digest = _digest(data)
    identity = f"{synthetic.SOURCE_ID} v{synthetic.GENERATOR_VERSION} seed {seed} {split}"
    return Dataset(data, identity, digest)


def synthetic_test(n_questions: int, seed: int, seen: list[Dataset]) -> Dataset:
    """Synthetic held-out questions, none in a context of the ``seen`` datasets."""
    contexts = frozenset(p["context"] for dataset in seen for article in dataset.data
                         for p in article["paragraphs"])
    data = synthetic.generate_test(n_questions, seed, contexts)
    identity = f"{synthetic.SOURCE_ID} v{synthetic.GENERATOR_VERSION} seed {seed} test"
    return Dataset(data, identity, _digest(data))


def from_hub(name: str, split: str) -> Dataset:
    """The hub dataset in the official format; a clear error where no hub is reachable."""
    try:
        import datasets  # the `datasets` package: only needed for this source
    except ImportError as exc:
        raise RuntimeError("data.hub needs the `datasets` package (pip install datasets)") from exc
    try:
        hub = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline: ConnectionError, LocalEntryNotFoundError, ...
        raise RuntimeError(
            f"cannot load hub dataset {name!r} ({type(exc).__name__}); no hub is reachable "
            "from here: set data.train and data.eval to official SQuAD 2.0 JSON files"
        ) from None
    paragraphs: dict[str, dict[str, Any]] = {}
    for row in hub:
        paragraph = paragraphs.setdefault(row["context"], {"context": row["context"], "qas": []})
        answers = [{"text": t, "answer_start": s} for t, s in
                   zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True)]
        paragraph["qas"].append({"id": row["id"], "question": row["question"],
                                 "answers": answers, "is_impossible": not answers})
    data = [{"title": name, "paragraphs": list(paragraphs.values())}]
    revision = getattr(hub.info, "version", None) or "unknown"
    return Dataset(data, f"hub:{name} split {split} revision {revision}", _digest(data))


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class FeatureSettings:
    max_seq_length: int
    doc_stride: int
    max_query_length: int


def examples(dataset: Dataset) -> list[dict[str, Any]]:
    """Flat questions: id, question, context, gold answer texts and starts."""
    rows = []
    for article in dataset.data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows.append({"id": qa["id"], "question": qa["question"].strip(),
                             "context": paragraph["context"],
                             "answers": [(a["text"], a["answer_start"]) for a in qa["answers"]]})
    return rows


def featurize(dataset: Dataset, tokenizer: Any, settings: FeatureSettings,
              cache_dir: Path) -> dict[str, torch.Tensor]:
    """Sliding-window features of every question, from the cache when possible.

    Returns tensors: ``input_ids``, ``attention_mask``, ``token_type_ids``,
    ``start_positions``/``end_positions`` (0, the [CLS] token, when the window holds no
    answer), ``example_index`` (row of :func:`examples`) and ``offsets`` (character span
    of each context token, -1 elsewhere) for turning logits back into answer text.
    """
    vocab = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    key = hashlib.sha256(json.dumps(
        [FEATURES_VERSION, dataset.sha256, hashlib.sha256(vocab.encode()).hexdigest(),
         type(tokenizer).__name__, asdict(settings)]).encode()).hexdigest()[:24]
    path = cache_dir / "features" / f"{key}.pt"
    if path.exists():
        return dict(torch.load(path))
    features = _featurize(examples(dataset), tokenizer, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(features, tmp)
    tmp.replace(path)  # atomic: concurrent trials never read half a file
    return features


def fewer_no_answer_windows(features: dict[str, torch.Tensor], keep: float,
                            seed: int) -> dict[str, torch.Tensor]:
    """Every window that holds an answer and a seeded random ``keep`` share of those that
    hold none (unanswerable questions, and windows that miss the answer)."""
    no_answer = features["start_positions"] == 0
    draw = torch.rand(len(no_answer), generator=torch.Generator().manual_seed(seed))
    kept = ~no_answer | (draw < keep)
    return {name: tensor[kept] for name, tensor in features.items()}


def _truncate_question(question: str, tokenizer: Any, max_tokens: int) -> str:
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    return question if len(offsets) <= max_tokens else question[: offsets[max_tokens - 1][1]]


def _featurize(rows: list[dict[str, Any]], tokenizer: Any,
               settings: FeatureSettings) -> dict[str, torch.Tensor]:
    questions = [_truncate_question(r["question"], tokenizer, settings.max_query_length)
                 for r in rows]
    encoded = tokenizer(
        questions, [r["context"] for r in rows], truncation="only_second",
        max_length=settings.max_seq_length, stride=settings.doc_stride,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length",
    )
    starts, ends, offsets_out = [], [], []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(i)
        context_offsets = [o if sid == 1 else (-1, -1) for o, sid in zip(offsets, sequence_ids,
                                                                          strict=True)]
        offsets_out.append(context_offsets)
        answers = rows[encoded["overflow_to_sample_mapping"][i]]["answers"]
        start = end = 0
        if answers:
            text, char_start = answers[0]
            char_end = char_start + len(text)
            tokens = [j for j, sid in enumerate(sequence_ids) if sid == 1]
            if offsets[tokens[0]][0] <= char_start and offsets[tokens[-1]][1] >= char_end:
                start = next(j for j in tokens if offsets[j][1] > char_start)
                end = next(j for j in reversed(tokens) if offsets[j][0] < char_end)
        starts.append(start)
        ends.append(end)
    return {
        "input_ids": torch.tensor(encoded["input_ids"]),
        "attention_mask": torch.tensor(encoded["attention_mask"]),
        "token_type_ids": torch.tensor(encoded["token_type_ids"]),
        "start_positions": torch.tensor(starts),
        "end_positions": torch.tensor(ends),
        "example_index": torch.tensor(encoded["overflow_to_sample_mapping"]),
        "offsets": torch.tensor(offsets_out),
    }
