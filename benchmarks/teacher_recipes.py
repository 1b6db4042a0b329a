"""Which recipe fine-tunes a pretrained teacher that beats the no-answer baseline?

Fine-tunes the distill-squad teacher (the pretrained backbone plus a span head) once per
recipe of a grid (epochs x learning rate x batch size x share of no-answer windows kept),
evaluates each with the official SQuAD 2.0 metrics, prints a table and writes JSON. It
calls the objective's own teacher code (``assets.fine_tune_teacher``) on the first GPU
when there is one, else on the CPU; the default grid is the one recorded in
docs/benchmarks.md (measured on a GPU: on a 2-core CPU one MiniLM recipe takes an hour).

    python benchmarks/teacher_recipes.py --train ../shared/data/squad_v2/train-v2.0.json \
        --eval ../shared/data/squad_v2/dev-v2.0.json --epochs 1 2 4 --learning-rates 5e-5 1e-4
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

from _report import print_table, write_results  # benchmarks/ is the script's directory

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="official SQuAD 2.0 training JSON")
    parser.add_argument("--eval", required=True, help="official SQuAD 2.0 evaluation JSON")
    parser.add_argument("--limit-train", type=int, help="the first N training questions")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--max-seq-length", type=int, default=192)
    parser.add_argument("--doc-stride", type=int, default=64)
    parser.add_argument("--max-query-length", type=int, default=32)
    parser.add_argument("--epochs", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[5e-5, 1e-4, 2e-4])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16])
    parser.add_argument("--keeps", type=float, nargs="+", default=[0.3, 1.0],
                        help="share of the no-answer windows kept for training")
    parser.add_argument("--cache", type=Path, default=REPO / "storage" / "cache")
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "teacher_recipes.json")
    args = parser.parse_args()

    from objectives.distill_squad import assets
    from objectives.distill_squad import data as squad_data
    from objectives.distill_squad.squad_eval import always_no_answer_baseline
    from objectives.distill_squad.training import predict_logits, squad_metrics

    train_set = assets.limit_questions(squad_data.from_file(args.train), args.limit_train)
    eval_set = squad_data.from_file(args.eval)
    tokenizer = assets.load_tokenizer(args.backbone, [train_set, eval_set], args.cache)
    settings = squad_data.FeatureSettings(args.max_seq_length, args.doc_stride,
                                          args.max_query_length)
    train_features = squad_data.featurize(train_set, tokenizer, settings, args.cache)
    eval_features = squad_data.featurize(eval_set, tokenizer, settings, args.cache)
    rows = squad_data.examples(eval_set)
    device = assets.compute_device()
    baseline = always_no_answer_baseline(eval_set.data)["exact"]
    print(f"device {device}; {len(train_features['input_ids'])} training windows; "
          f"no-answer baseline exact {baseline:.2f}", flush=True)
    results: list[dict[str, Any]] = []
    for epochs, lr, batch, keep in itertools.product(args.epochs, args.learning_rates,
                                                     args.batch_sizes, args.keeps):
        recipe = {"backbone": args.backbone, "max_seq_length": args.max_seq_length,
                  "teacher_epochs": epochs, "teacher_learning_rate": lr,
                  "teacher_batch_size": batch, "teacher_no_answer_keep": keep}
        began = time.perf_counter()
        model = assets.fine_tune_teacher(recipe, len(tokenizer), train_features, device)
        seconds = time.perf_counter() - began
        metrics = squad_metrics(predict_logits(model.to(device), eval_features, device),
                                eval_features, rows, eval_set.data)
        results.append({"epochs": epochs, "lr": lr, "batch": batch, "keep": keep,
                        "seconds": round(seconds, 1),
                        **{k: round(metrics[k], 2) for k in (
                            "exact", "f1", "HasAns_exact", "NoAns_exact", "best_exact",
                            "best_f1")},
                        "over_baseline": round(metrics["exact"] - baseline, 2)})
        print_table(results[-1:])
    print()
    print_table(results)
    write_results(args.out, {"device": str(device), "baseline_exact": baseline,
                             "features": vars(args) | {"out": None, "cache": None},
                             "results": results})


if __name__ == "__main__":
    main()
