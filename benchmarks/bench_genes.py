"""Wall time of one fold's gene selection on TCGA-BLCA (373 patients, 3,062 omic features).

    python benchmarks/bench_genes.py [--repeats 5]

Needs ../shared/data beside the checkout. Reports the cohort build (validation + collapse to
patients) and, per fold, `genes.select` (bins, scaler, Welch tests, per-family selection).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ghanet_pipeline import cohort, genes, splits  # noqa: E402
from ghanet_pipeline.config import validate_config  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cfg = validate_config({"labels": {"fit_on": "cohort"}})
    clinical = cohort.load_clinical(DATA / "tcga_blca/tcga_blca_all_clean.csv.gz")
    t = time.perf_counter()
    c = cohort.build_cohort(clinical, None, "fail")
    print(f"cohort build: {time.perf_counter() - t:.3f} s, {len(c.patients)} patients, "
          f"{len(c.omic_columns)} omic columns")
    fams = cohort.family_columns(cohort.load_signatures(DATA / "signatures.csv"), list(c.patients.columns))
    folds = splits.read_split_files(DATA / "tcga_blca", 5)
    for i, (train, _) in enumerate(folds):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            sel, _, _ = genes.select(c.patients, train, fams, cfg["genes"], cfg["labels"])
            times.append(time.perf_counter() - t)
        print(f"fold {i}: selection best {min(times):.3f} s, median {sorted(times)[len(times) // 2]:.3f} s; "
              f"{sum(sel['sizes'].values())} features kept")


if __name__ == "__main__":
    main()
