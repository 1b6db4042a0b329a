"""distill-squad pieces: arguments, features, students, loss, answer extraction."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from objectives.distill_squad import data as squad_data
from objectives.distill_squad.assets import load_tokenizer, teacher_key
from objectives.distill_squad.modeling import (
    QAModel,
    attention_heads,
    build_student,
    count_params,
    ffn_neurons,
    tiny_config,
    with_lora,
)
from objectives.distill_squad.objective import DistillSquadObjective, student_params
from objectives.distill_squad.training import TrainSettings, answers, distillation_loss


@pytest.mark.parametrize(("args", "message"), [
    ({"data": {"train": "/no/such.json", "eval": "/no/such.json"}}, "data.train: no file"),
    ({"data": {"train": "x.json"}}, "data.train and data.eval go together"),
    ({"data": {"folder": "x"}}, "data.folder is not a data setting"),
    ({"data": {"test": "/no/such.json"}}, "data.test: no file"),
    ({"max_seq_length": 0}, "max_seq_length must be a positive integer"),
    ({"max_seq_length": 32, "doc_stride": 32}, "below max_seq_length"),
    ({"teacher_no_answer_keep": 0}, "teacher_no_answer_keep must be in"),
])
def test_bad_arguments_are_rejected_up_front(args: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DistillSquadObjective(**args)


def test_held_out_needs_a_test_file_with_real_data(tmp_path: Path) -> None:
    for split in ("train", "eval"):
        (tmp_path / f"{split}.json").write_text("{}")
    objective = DistillSquadObjective(data={"train": str(tmp_path / "train.json"),
                                            "eval": str(tmp_path / "eval.json")})
    with pytest.raises(ValueError, match=r"no held-out data: set data\.test to a SQuAD 2\.0 "
                       r"JSON file .* --held-out --set data\.test=PATH"):
        objective.evaluate_held_out(tmp_path / "model", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before reading anything


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    cache = tmp_path_factory.mktemp("cache")
    dataset = squad_data.from_synthetic(120, 0, "train")
    tokenizer = load_tokenizer("tiny", [dataset], cache)
    settings = squad_data.FeatureSettings(max_seq_length=48, doc_stride=16, max_query_length=16)
    features = squad_data.featurize(dataset, tokenizer, settings, cache)
    return dataset, tokenizer, settings, features, cache


def test_features_label_the_gold_span_and_are_cached(small) -> None:  # type: ignore[no-untyped-def]
    dataset, tokenizer, settings, features, cache = small
    rows = squad_data.examples(dataset)
    assert len(features["input_ids"]) >= len(rows)
    answerable = 0
    for i in range(len(features["input_ids"])):
        row = rows[int(features["example_index"][i])]
        start, end = int(features["start_positions"][i]), int(features["end_positions"][i])
        if start:
            answerable += 1
            span = row["context"][int(features["offsets"][i, start, 0]):
                                  int(features["offsets"][i, end, 1])]
            assert span == row["answers"][0][0]
        else:
            assert end == 0
    assert 0 < answerable < len(features["input_ids"])
    assert len(list((cache / "features").glob("*.pt"))) == 1
    again = squad_data.featurize(dataset, tokenizer, settings, cache)  # from the cache
    assert torch.equal(again["input_ids"], features["input_ids"])


def _teacher(vocab: int = 500) -> QAModel:
    torch.manual_seed(0)
    return QAModel(tiny_config(vocab, 48))


def test_no_answer_windows_are_down_sampled_for_pretrained_teachers(small) -> None:  # type: ignore[no-untyped-def]
    features = small[3]
    no_answer = int((features["start_positions"] == 0).sum())
    fewer = squad_data.fewer_no_answer_windows(features, 0.3, seed=0)
    kept_no_answer = int((fewer["start_positions"] == 0).sum())
    answered = features["start_positions"] > 0
    assert int((fewer["start_positions"] > 0).sum()) == int(answered.sum())
    assert 0 < kept_no_answer < no_answer * 0.5
    assert torch.equal(fewer["input_ids"],
                       squad_data.fewer_no_answer_windows(features, 0.3, seed=0)["input_ids"])


def test_teacher_recipe_and_cache_key_per_backbone() -> None:
    features = squad_data.FeatureSettings(64, 32, 24)
    tiny = DistillSquadObjective().args
    # A recipe's key does not change between versions of the code: cached teachers stay valid.
    assert teacher_key(tiny, "synthetic-id", 1234, features) == "712c0df1b384662af776"
    assert (tiny["teacher_epochs"], tiny["teacher_learning_rate"],
            tiny["teacher_batch_size"], tiny["teacher_no_answer_keep"]) == (5.0, 5e-4, 32, 1.0)
    minilm = DistillSquadObjective(backbone="minilm").args
    assert (minilm["teacher_epochs"], minilm["teacher_learning_rate"],
            minilm["teacher_batch_size"], minilm["teacher_no_answer_keep"]) == (3.0, 2e-4, 16, 0.3)
    keys = {teacher_key(args, "squad", 30522, features) for args in (
        minilm, DistillSquadObjective(backbone="minilm", teacher_no_answer_keep=1.0).args,
        DistillSquadObjective(backbone="minilm", teacher_learning_rate=3e-5).args)}
    assert len(keys) == 3  # every recipe setting is part of the key


def test_students_start_from_the_teachers_layers_when_shapes_allow() -> None:
    teacher = _teacher()
    student, from_teacher = build_student(teacher, {"n_layers": 2, "n_heads": 2})
    assert from_teacher and student.config.num_hidden_layers == 2
    assert student.config.num_attention_heads == 4  # the teacher's: its copied attention
    assert torch.equal(student.encoder.embeddings.word_embeddings.weight,
                       teacher.encoder.embeddings.word_embeddings.weight)
    assert torch.equal(student.encoder.encoder.layer[1].output.dense.weight,
                       teacher.encoder.encoder.layer[1].output.dense.weight)  # first and last
    smaller, from_teacher = build_student(teacher, {"n_layers": 2, "hidden_size": 64,
                                                    "n_heads": 4})
    assert not from_teacher and count_params(smaller)[0] < count_params(student)[0]
    with pytest.raises(ValueError, match="hidden size 64 is not divisible by 3"):
        build_student(teacher, {"hidden_size": 64, "n_heads": 3})
    scratch, from_teacher = build_student(teacher, {"init": "scratch", "n_heads": 2})
    assert not from_teacher and scratch.config.num_attention_heads == 2
    assert not torch.equal(scratch.encoder.embeddings.word_embeddings.weight,
                           teacher.encoder.embeddings.word_embeddings.weight)
    with pytest.raises(ValueError, match="init must be"):
        build_student(teacher, {"init": "distil"})
    one, _ = build_student(teacher, {"n_layers": 1})  # its first layer reads the embeddings
    assert torch.equal(one.encoder.encoder.layer[0].attention.self.query.weight,
                       teacher.encoder.encoder.layer[0].attention.self.query.weight)


def test_the_flat_student_kind_sets_mode_and_init() -> None:
    assert student_params({"student": "distilled", "n_layers": 1}) == {
        "student": "distilled", "n_layers": 1, "mode": "full", "init": "teacher"}
    assert student_params({"student": "lora"})["mode"] == "lora"
    assert student_params({"student": "scratch"})["init"] == "scratch"
    assert student_params({"mode": "lora"}) == {"mode": "lora"}  # studies from before it
    with pytest.raises(ValueError, match="student must be one of distilled, lora, scratch"):
        student_params({"student": "pruned"})


def _bert_params(vocab: int, positions: int, hidden: int, layers: int, ffn: int) -> int:
    """Parameters of a QAModel: embeddings (+ LayerNorm), per layer attention (q, k, v,
    output + LayerNorm) and FFN (in, out + LayerNorm), the 2-way span head."""
    embeddings = (vocab + positions + 2) * hidden + 2 * hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * hidden + 2 * hidden * ffn + ffn + 3 * hidden
    return embeddings + layers * layer + 2 * hidden + 2


def test_narrow_students_keep_the_teachers_most_important_ffn_neurons() -> None:
    teacher = _teacher()
    assert count_params(teacher)[0] == _bert_params(500, 48, 128, 2, 512)
    student, from_teacher = build_student(teacher, {"n_layers": 2, "ffn_fraction": 0.25})
    assert from_teacher and student.config.intermediate_size == 128
    assert count_params(student)[0] == _bert_params(500, 48, 128, 2, 128)
    for mine, theirs in zip(student.encoder.encoder.layer, teacher.encoder.encoder.layer,
                            strict=True):
        kept = ffn_neurons(theirs, 128)
        assert len(set(kept.tolist())) == 128
        importance = (theirs.intermediate.dense.weight.norm(dim=1)
                      * theirs.output.dense.weight.norm(dim=0))
        assert importance[kept].min() >= importance.topk(128).values.min()
        assert torch.equal(mine.intermediate.dense.weight, theirs.intermediate.dense.weight[kept])
        assert torch.equal(mine.intermediate.dense.bias, theirs.intermediate.dense.bias[kept])
        assert torch.equal(mine.output.dense.weight, theirs.output.dense.weight[:, kept])
        assert torch.equal(mine.output.dense.bias, theirs.output.dense.bias)
        assert torch.equal(mine.attention.self.query.weight, theirs.attention.self.query.weight)
    # the sliced FFN computes exactly the kept neurons' share of the teacher's FFN
    x = torch.randn(3, 128)
    theirs, mine = teacher.encoder.encoder.layer[0], student.encoder.encoder.layer[0]
    kept = ffn_neurons(theirs, 128)
    mask = torch.zeros(512)
    mask[kept] = 1
    full = theirs.output.dense(theirs.intermediate(x) * mask)
    assert torch.allclose(mine.output.dense(mine.intermediate(x)), full, atol=1e-5)
    scratch, from_teacher = build_student(teacher, {"n_layers": 1, "hidden_size": 64,
                                                    "ffn_fraction": 0.5})
    assert not from_teacher and scratch.config.intermediate_size == 128  # 0.5 x 4 x 64
    assert count_params(scratch)[0] == _bert_params(500, 48, 64, 1, 128)
    with pytest.raises(ValueError, match="ffn_fraction must be in"):
        build_student(teacher, {"ffn_fraction": 0})


def test_students_keep_the_teachers_most_important_attention_heads(tmp_path: Path) -> None:
    teacher = _teacher()
    full, _ = build_student(teacher, {"n_layers": 1, "kept_heads": 4})
    two, from_teacher = build_student(teacher, {"n_layers": 1, "kept_heads": 2})
    # two heads fewer: q, k, v rows (weights and biases), output columns
    assert from_teacher and count_params(full)[0] - count_params(two)[0] == 4 * 64 * 128 + 3 * 64
    theirs, mine = teacher.encoder.encoder.layer[0], two.encoder.encoder.layer[0]
    kept = attention_heads(theirs, 2)
    value = theirs.attention.self.value.weight.view(4, 32, 128)
    output = theirs.attention.output.dense.weight.view(128, 4, 32)
    importance = value.flatten(1).norm(dim=1) * output.transpose(0, 1).flatten(1).norm(dim=1)
    assert set(kept.tolist()) == set(importance.topk(2).indices.tolist())
    # the kept heads compute exactly what they did in the teacher, whose other heads are
    # silenced (value rows zeroed)
    silenced = copy.deepcopy(theirs).eval()
    others = [h for h in range(4) if h not in kept.tolist()]
    with torch.no_grad():
        silenced.attention.self.value.weight.view(4, 32, 128)[others] = 0
        silenced.attention.self.value.bias.view(4, 32)[others] = 0
    x = torch.randn(1, 5, 128)
    expected = silenced.attention.output.dense(silenced.attention.self(x)[0])
    got = mine.eval().attention.output.dense(mine.attention.self(x)[0])
    assert torch.allclose(got, expected, atol=1e-5)
    two.save(tmp_path / "model")  # a pruned student loads back with its own shapes
    loaded = QAModel.load(tmp_path / "model")
    assert count_params(loaded)[0] == count_params(two)[0]
    with pytest.raises(ValueError, match=r"kept_heads must be in 1\.\.4"):
        build_student(teacher, {"kept_heads": 8})


def test_lora_trains_a_fraction_of_the_parameters() -> None:
    student, _ = build_student(_teacher(), {"n_layers": 2})
    total_before, _ = count_params(student)
    lora = with_lora(student, {"lora_r": 4, "lora_alpha": 8})
    total, trainable = count_params(lora)
    assert total == total_before  # adapters merge into the deployed weights
    assert 0 < trainable < total / 5
    merged = lora.merge_and_unload()  # what latency_ms measures: the deployed student
    assert isinstance(merged, QAModel) and count_params(merged)[0] == total


def test_distillation_loss_components() -> None:
    torch.manual_seed(0)
    start, end = torch.randn(4, 10), torch.randn(4, 10)
    batch = {"start_positions": torch.tensor([0, 1, 2, 3]),
             "end_positions": torch.tensor([0, 2, 2, 5])}
    hard = TrainSettings(learning_rate=1e-3, epochs=1, batch_size=4, evaluations=1)
    parts = distillation_loss(start, end, batch, (start, end), hard)
    assert set(parts) == {"loss", "loss_squad"} and torch.equal(parts["loss"], parts["loss_squad"])
    soft = TrainSettings(learning_rate=1e-3, epochs=1, batch_size=4, evaluations=1,
                         alpha_squad=0.5, alpha_ce=0.5, temperature=3.0)
    same = distillation_loss(start, end, batch, (start, end), soft)
    assert float(same["loss_ce"]) == pytest.approx(0.0, abs=1e-6)
    other = distillation_loss(start, end, batch, (end, start), soft)
    assert float(other["loss_ce"]) > 0
    assert float(other["loss"]) == pytest.approx(
        0.5 * float(other["loss_squad"]) + 0.5 * float(other["loss_ce"]))


def test_answers_take_the_best_span_or_no_answer() -> None:
    rows = [{"id": "q1", "context": "Kofia's capital is Nirin."}]
    offsets = torch.full((1, 8, 2), -1)
    for i, (a, b) in enumerate([(0, 5), (5, 7), (8, 15), (16, 18), (19, 24)], start=3):
        offsets[0, i] = torch.tensor([a, b])
    features = {"offsets": offsets, "example_index": torch.tensor([0])}
    logits = torch.zeros(1, 8, 2)
    logits[0, 7, 0] = logits[0, 7, 1] = 5.0  # "Nirin"
    predictions, na = answers(logits, features, rows)
    assert predictions == {"q1": "Nirin"} and na["q1"] == pytest.approx(-10.0)
    logits[0, 0, 0] = logits[0, 0, 1] = 6.0  # [CLS] wins: no answer at threshold 0
    _, na = answers(logits, features, rows)
    assert na["q1"] == pytest.approx(2.0)


def test_hub_data_fails_clearly_without_a_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="no hub is reachable"):
        squad_data.from_hub("squad_v2", "train")


def test_real_squad_file_identity() -> None:
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad_v2" / "dev-v2.0.json"
    if not path.exists():
        pytest.skip("../shared/data/squad_v2 is not beside this checkout")
    dataset = squad_data.from_file(path)
    assert dataset.identity.endswith(
        "sha256:11d4ed8be01b0110a901d8c13456e073544ff204225c6e36d957b3659b666884")
    assert len(squad_data.examples(dataset)) == 741
