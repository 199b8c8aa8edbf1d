"""Segmentation + tiling: wall time, peak memory and tile count, ours next to CLAM's defaults.

Slides: a generated 40,000 x 30,000 px slide at 0.25 um/px (cached under bench-out/) and the real
CMU small-region slide. Each measurement runs in a fresh subprocess so peak RSS is its own.

    python benchmarks/bench_segment_tile.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench-out"

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r}); sys.path.insert(0, {bench!r})
from ghanet_pipeline import segment, tile
from ghanet_pipeline.config import validate_config
cfg = validate_config({{}})
slide, what, out = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
if what == "ours":
    st = segment.run(slide, "b", cfg["segment"], geojson=out + ".geojson", qc_png=out + ".qc.jpg",
                     stats_json=out + ".json")
    t_seg = time.perf_counter() - t
    res = tile.run(slide, "b", cfg["tile"], contours=out + ".geojson", coords_h5=out + ".h5",  # as the workflow
                   qc_png=out + ".tile.qc.jpg", segment_stats=out + ".json", segment_qc=out + ".qc.jpg")
    extra = dict(n_tiles=res["n_tiles"], n_pieces=st["n_pieces"], n_holes=st["n_holes"],
                 tissue_area_mm2=st["tissue_area_mm2"], pen_area_mm2=st["pen_area_mm2"], segment_s=t_seg,
                 tile_s=time.perf_counter() - t - t_seg)
else:
    from clam_baseline import clam_segment
    polys = clam_segment(slide)
    extra = dict(n_pieces=len(polys), n_holes=sum(len(p) - 1 for p in polys))
wall = time.perf_counter() - t
# VmHWM is this process's own peak (ru_maxrss survives exec and would include the parent's)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
if what != "ours":
    polys = clam_segment(slide)
else:
    from ghanet_pipeline import formats
    polys = formats.read_contours(out + ".geojson")
import pickle
pickle.dump(polys, open(out + ".polys.pkl", "wb"))
print(json.dumps(dict(wall_s=wall, peak_rss_mb=int(hwm) / 1024, **extra)))
"""


sys.path.insert(0, str(REPO))
# seed, width, height, mpp, latent mix of the generated slide
BIG_ARGS = (12345, 40_000, 30_000, 0.25, [0.4, 0.3, 0.3])


def big_slide() -> Path:
    path = OUT / "bench_40k_x_30k_0.25mpp.tiff"
    if not path.exists():


        t = time.perf_counter()
        seed, w, h, mpp, z = BIG_ARGS
        # in a child process, so the parent's peak memory stays out of the measurements
        code = (f"import sys, numpy as np; sys.path.insert(0, {str(REPO)!r}); from ghanet_pipeline import demo; "
                f"demo.render_slide(__import__('pathlib').Path({str(path)!r}), width={w}, height={h}, "
                f"mpp={mpp}, z=np.array({z}), seed={seed})")
        subprocess.run([sys.executable, "-c", code], check=True)
        print(f"generated {path.name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def measure(slide: Path, what: str) -> dict:
    code = CHILD.format(repo=str(REPO), bench=str(REPO / "benchmarks"))
    proc = subprocess.run([sys.executable, "-c", code, str(slide), what, str(OUT / f"{slide.stem}.{what}")],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def accuracy(slide: Path, what: str) -> dict:
    """Against the generator's ground truth: tissue IoU (outside ink), ink kept as tissue, holes found."""
    import pickle

    import cv2
    import numpy as np

    from ghanet_pipeline import demo

    polys = pickle.load(open(OUT / f"{slide.stem}.{what}.polys.pkl", "rb"))
    _, m, layout = demo.slide_layout(*BIG_ARGS)
    truth = demo.truth_masks(layout, m, BIG_ARGS[3])
    mask = np.zeros(truth["tissue"].shape, np.uint8)
    for rings in polys:
        cv2.fillPoly(mask, [np.round(np.asarray(rings[0]) / m).astype(np.int32)], 1)
        for hole in rings[1:]:
            cv2.fillPoly(mask, [np.round(np.asarray(hole) / m).astype(np.int32)], 0)
    ours = mask.astype(bool)
    visible = truth["tissue"] & ~truth["pen"]
    ink = truth["pen"] & ~truth["tissue"]
    inner = cv2.erode(truth["holes"].astype(np.uint8), np.ones((5, 5))).astype(bool)
    pieces = cv2.connectedComponents(visible.astype(np.uint8))[0] - 1
    return {"tissue_iou": float((ours & visible).sum() / (ours | visible).sum()),
            "ink_called_tissue": float(ours[ink].mean()),
            "hole_recall": float((~ours[inner]).mean()) if inner.any() else float("nan"),
            "planted_pieces": int(pieces)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    slides = {"generated_40k_x_30k": big_slide(), "cmu_small_region": REPO / "tests/data/cmu_small_region.svs"}
    report = {}
    for name, slide in slides.items():
        runs = {"ours": [], "clam_defaults": []}
        for _ in range(args.repeats):  # alternated, so a slower spell of the machine falls on both
            for what, got in runs.items():
                got.append(measure(slide, what))
        for what in runs:
            best = min(runs[what], key=lambda r: r["wall_s"])
            if name.startswith("generated"):
                best.update(accuracy(slide, what))
            report[f"{name}/{what}"] = best
            print(f"{name:22s} {what:14s} " + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                       for k, v in best.items()))
        ours, clam = report[f"{name}/ours"], report[f"{name}/clam_defaults"]
        print(f"{name:22s} segment time ours/CLAM = {ours['segment_s'] / clam['wall_s']:.2f}; "
              f"segment + tile ours/CLAM = {ours['wall_s'] / clam['wall_s']:.2f}")
    (OUT / "bench_segment_tile.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
