"""Peak memory and wall time of the cohort-level jobs on a synthetic cohort of ~10,000 slides.

    python benchmarks/bench_cohort_memory.py [--slides 10000] [--patches 128] [--omics 3000]
                                            [--out bench-out/cohort10k] [--only "train ghanet"]

The cohort, written once into --out and reused after:
- the demo's patients and slides (`demo.clinical_table`: some patients have two slides), as many
  as make --slides, with enough noise genes beside the demo's for --omics omic columns (TCGA-BLCA
  has 3,062), spread over the six families of the signatures table;
- per slide, a feature file of --patches random 1024-d features (our format). 128 patches make
  about 5.2 GB, over training's 4 GB bag cache, so training reads its bags from disk, as it does
  for a large cohort;
- per slide, the segment stats, coords and QC images of a real slide: the bundled CMU slide,
  segmented and tiled once, its files copied under every slide id.

Then each cohort job runs as the workflow runs it (`python -m ghanet_pipeline <stage> ...`, one
process each), and its peak RSS is read from os.wait4 when it ends: feature-manifest,
slide-report, splits, genes (every fold), train (one epoch; G-HANet and ABMIL on fold 0, the SNN
on every fold) and evaluate (what those give: every patient once through the SNN).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ghanet_pipeline import demo, formats, segment, tile  # noqa: E402
from ghanet_pipeline.config import validate_config  # noqa: E402

CMU = REPO / "tests/data/cmu_small_region.svs"
DIM = 1024


def make_cohort(out: Path, n_slides: int, patches: int, omics: int) -> pd.DataFrame:
    """The sheet of the cohort in `out` (written when missing)."""
    sheet_path = out / "slides.csv"
    if sheet_path.exists():
        return pd.read_csv(sheet_path)
    out.mkdir(parents=True, exist_ok=True)
    ratio = len(demo.clinical_table(200, 0)[0]) / 200  # slides per patient in the demo's plan
    clinical, signatures = demo.clinical_table(int(np.ceil(n_slides / ratio)), 0)
    rng = np.random.default_rng(0)
    n_noise = max(0, omics - sum(c.endswith(("_rnaseq", "_cnv")) for c in clinical.columns))
    noise = [f"NOISE{j:05d}" for j in range(n_noise)]
    per_patient = rng.normal(size=(clinical.case_id.nunique(), n_noise)).astype(np.float32).round(3)
    rows = clinical.case_id.map({c: i for i, c in enumerate(clinical.case_id.unique())}).to_numpy()
    clinical = pd.concat([clinical, pd.DataFrame(per_patient[rows], columns=[f"{g}_rnaseq" for g in noise])], axis=1)
    families = {f: list(signatures[f].dropna()) + noise[i::6] for i, f in enumerate(signatures.columns)}
    longest = max(map(len, families.values()))
    pd.DataFrame({f: g + [None] * (longest - len(g)) for f, g in families.items()}).to_csv(
        out / "signatures.csv", index=False)
    clinical.to_csv(out / "clinical.csv", index=False)

    real = out / "cmu"  # one real slide's segment and tile outputs, copied under every slide id
    cfg = validate_config({})
    segment.run(str(CMU), "cmu", cfg["segment"], geojson=real / "s.geojson", qc_png=real / "s.qc.jpg",
                stats_json=real / "s.stats.json")
    tile.run(str(CMU), "cmu", cfg["tile"], contours=real / "s.geojson", coords_h5=real / "t.h5",
             qc_png=real / "t.qc.jpg")
    stats = json.loads((real / "s.stats.json").read_text())
    coords, coords_attrs = formats.read_coords(real / "t.h5")
    for d in ("segment", "tile", "features"):
        (out / d).mkdir(exist_ok=True)
    for i, sid in enumerate(clinical.slide_id):
        (out / f"segment/{sid}.stats.json").write_text(json.dumps({**stats, "slide_id": sid}))
        for src, dst in (("s.qc.jpg", f"segment/{sid}.qc.jpg"), ("t.qc.jpg", f"tile/{sid}.qc.jpg"),
                         ("t.h5", f"tile/{sid}.h5")):
            os.link(real / src, out / dst)
        feats = rng.standard_normal((patches, DIM), dtype=np.float32)
        xy = np.stack([np.arange(patches) * 256, np.zeros(patches)], 1)
        formats.write_features(out / f"features/{sid}.h5", feats, xy, coords_attrs, {
            "slide_id": sid, "encoder": "resnet50_trunc", "weights_sha256": "0" * 64, "precision": "fp32",
            "dim": DIM, "input_size": 224, "patch_size": 256, "target_mpp": 0.5, "level0_mpp": 0.499,
            "channels_last": True, "reader": "stored-tiles", "settings": "{}"})
        if i % 1000 == 0:
            print(f"  wrote {i}/{len(clinical)} slides", flush=True)
    sheet = pd.DataFrame({"slide_id": clinical.slide_id, "case_id": clinical.case_id, "path": str(CMU)})
    sheet.to_csv(sheet_path, index=False)
    return sheet


ONLY = ""  # --only: the jobs whose name contains this (their inputs must be there from a full run)


def measure(name: str, args: list, cwd: Path) -> dict:
    """One stage in its own process: wall seconds and peak RSS (MB) from wait4."""
    if ONLY not in name:
        return {"job": name, "wall_s": None, "peak_rss_mb": None}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ghanet_pipeline", *map(str, args)], cwd=cwd,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{err[-3000:]}")
    row = {"job": name, "wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    print(f"{name}: {row['wall_s']} s, peak RSS {row['peak_rss_mb']} MB", flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=10000)
    ap.add_argument("--patches", type=int, default=128)
    ap.add_argument("--omics", type=int, default=3000)
    ap.add_argument("--out", default="bench-out/cohort10k")
    ap.add_argument("--only", default="", help="run only the jobs whose name contains this")
    a = ap.parse_args()
    global ONLY
    ONLY = a.only
    out = Path(a.out).resolve()
    t = time.perf_counter()
    sheet = make_cohort(out, a.slides, a.patches, a.omics)
    n_patients = sheet.case_id.nunique()
    size = sum(p.stat().st_size for p in (out / "features").glob("*.h5")) / 1e9
    print(f"cohort: {len(sheet)} slides of {n_patients} patients, features {size:.1f} GB on disk "
          f"(ready in {time.perf_counter() - t:.0f} s)", flush=True)
    fast = json.dumps({"train": {"epochs": 1}})
    rows = [
        measure("feature-manifest", ["feature-manifest", "--features-dir", "features", "--slide-sheet", "slides.csv",
                                     "--out", "features/manifest.csv"], out),
        measure("slide-report", ["slide-report", "--stats-pattern", "segment/{slide}.stats.json", "--coords-pattern",
                                 "tile/{slide}.h5", "--sheets", "slides.csv", "--out", "report/slides.csv",
                                 "--qc-images", "segment/{slide}.qc.jpg", "tile/{slide}.qc.jpg", "--gallery-dir",
                                 "report/slide_qc"], out),
        measure("splits", ["splits", "--params", "{}", "--clinical", "clinical.csv", "--slide-sheet", "slides.csv",
                           "--out-dir", "cohort"], out),
    ]
    folds = len(list((out / "cohort").glob("fold_*.csv")))
    for k in range(folds):
        rows.append(measure(f"genes fold {k}", ["genes", "--params", "{}", "--patients", "cohort/patients.csv.gz",
                                                "--fold-csv", f"cohort/fold_{k}.csv", "--fold", k, "--signatures",
                                                "signatures.csv", "--out-dir", f"genes/fold_{k}"], out))
    trained = [("ghanet", 0), ("abmil", 0)] + [("snn", k) for k in range(folds)]
    for model, k in trained:
        rows.append(measure(f"train {model} fold {k}", [
            "train", "--model", model, "--fold", k, "--patients", "cohort/patients.csv.gz", "--fold-csv",
            f"cohort/fold_{k}.csv", "--selection", f"genes/fold_{k}/selection.json", "--scaler",
            f"genes/fold_{k}/scaler.csv", "--features-dir", "features", "--manifest", "features/manifest.csv",
            "--splits-summary", "cohort/splits.json", "--params", fast, "--out-dir", f"models/{model}/fold_{k}",
            "--device", "cpu", "--gpus", 0, "--threads", 2], out))
    rows.append(measure("evaluate", ["evaluate", "--model-dirs", *[f"models/{m}/fold_{k}" for m, k in trained],
                                     "--params", "{}", "--out-dir", "evaluate"], out))
    pages = sorted((out / "report/slide_qc").glob("*.jpg"))
    print(f"slide QC contact sheets: {len(pages)} pages, {sum(p.stat().st_size for p in pages) / 1e6:.1f} MB "
          f"for {len(sheet)} slides", flush=True)
    table = pd.DataFrame(rows).dropna()
    print(table.to_string(index=False))
    table.to_csv(out / f"memory{'_' + a.only.replace(' ', '_') if a.only else ''}.csv", index=False)


if __name__ == "__main__":
    main()
