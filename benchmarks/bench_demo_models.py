"""The configured models (or --models) on a demo cohort: mean held-out C-index over the folds, for several seeds.

    python benchmarks/bench_demo_models.py --results results [--seeds 0 1 2] [--jobs 2] [--models ghanet abmil]

Reads the features and clinical table of a finished demo run (`snakemake --cores 2`), then for
each seed redraws the folds (splits.seed) and the training randomness (train.seed), reruns gene
selection, trains every model on every fold with the default config, and evaluates. Nothing is
tuned; the default training settings are used as they are. Output: bench-out/demo_models/<seed>/
and a table on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def one(args) -> tuple:
    seed, model, fold, results, out = args
    import torch

    from ghanet_pipeline import train
    from ghanet_pipeline.config import load_config

    torch.set_num_threads(1)
    cfg = load_config(REPO / "config.yaml")
    cfg["train"]["seed"] = seed
    sections = {k: cfg[k] for k in ("train", "model", "labels", "genes", "cohort", "segment", "tile", "extract")}
    t = time.perf_counter()
    train.run(model, fold, patients_csv=out / "cohort/patients.csv.gz", fold_csv=out / f"cohort/fold_{fold}.csv",
              selection_json=out / f"genes/fold_{fold}/selection.json",
              scaler_csv=out / f"genes/fold_{fold}/scaler.csv",
              features_dir=results / "features" / cfg["extract"]["encoder"], sections=sections,
              out_dir=out / f"models/{model}/fold_{fold}", device="cpu", threads=1)
    return seed, model, fold, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench-out/demo_models")
    ap.add_argument("--models", nargs="+", default=None, help="registry names (default: the config's train.models)")
    a = ap.parse_args()

    import pandas as pd

    from ghanet_pipeline import evaluate, genes, splits
    from ghanet_pipeline.config import load_config
    from ghanet_pipeline.models import chosen
    from ghanet_pipeline.sheet import read_slides

    cfg = load_config(REPO / "config.yaml")
    demo = a.results / "demo"
    slide_cases = {sid: r["case_id"] for sid, r in read_slides(demo / "slides.csv").items()}
    models, k = a.models or chosen(cfg["train"]["models"], demo=True), cfg["splits"]["folds"]
    tasks = []
    for seed in a.seeds:
        out = a.out / f"seed_{seed}"
        sp = dict(cfg["splits"], seed=seed)
        splits.run(demo / "clinical.csv", slide_cases, sp, cfg["cohort"],
                   cfg["labels"], out_dir=out / "cohort")
        for fold in range(k):
            genes.run(out / "cohort/patients.csv.gz", out / f"cohort/fold_{fold}.csv", demo / "signatures.csv",
                      cfg["genes"], cfg["labels"], out_dir=out / f"genes/fold_{fold}", fold=fold)
        tasks += [(seed, m, f, a.results, out) for m in models for f in range(k)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.jobs) as pool:
        times = list(pool.map(one, tasks))
    wall = time.perf_counter() - t0
    rows = []
    for seed in a.seeds:
        out = a.out / f"seed_{seed}"
        table = evaluate.run([out / f"models/{m}/fold_{f}" for m in models for f in range(k)],
                             cfg["evaluate"], out_dir=out / "evaluate")
        rows += [dict(seed=seed, **r) for r in table[["model", "c_index_mean", "c_index_sd", "td_auc_mean",
                                                       "logrank_p"]].to_dict("records")]
    res = pd.DataFrame(rows)
    train_s = pd.DataFrame(times, columns=["seed", "model", "fold", "seconds"]).groupby("model").seconds.mean()
    print(f"cohort: {len(set(slide_cases.values()))} patients, {len(slide_cases)} slides; {k} folds; seeds {a.seeds}")
    print(res.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nmean over seeds of the fold-mean C-index:")
    print(res.groupby("model").c_index_mean.agg(["mean", "std", "min", "max"]).to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nmean training seconds per fold (1 thread): {train_s.round(1).to_dict()}; wall {wall:.0f} s "
          f"with {a.jobs} parallel jobs")
    res.to_csv(a.out / "summary.csv", index=False)


if __name__ == "__main__":
    main()
