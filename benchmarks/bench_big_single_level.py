"""Peak memory of segment + tile on a huge single-level slide (no pyramid for OpenSlide to use).

Writes a 100,000 x 80,000 px single-level tiled JPEG BigTIFF at 0.25 um/px under bench-out/ (once;
glass with three large regions of real H&E tiles from the CMU slide), then runs segment and tile
in a fresh subprocess and reports wall time and peak RSS (VmHWM). Before bounded reads, segment read
the whole level: about 20 bytes per level-0 pixel, 160 GB here.

    python benchmarks/bench_big_single_level.py [--width 100000 --height 80000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench-out"
TILE = 512

CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
from ghanet_pipeline import segment, tile
from ghanet_pipeline.config import validate_config
cfg = validate_config({{}})
slide, out = sys.argv[1], sys.argv[2]
t = time.perf_counter()
st = segment.run(slide, "big", cfg["segment"], geojson=out + ".geojson", qc_png=out + ".png", stats_json=out + ".json")
t_seg = time.perf_counter() - t
res = tile.run(slide, "big", cfg["tile"], contours=out + ".geojson", coords_h5=out + ".h5", qc_png=out + ".tile.png",
               segment_stats=out + ".json", segment_qc=out + ".png")  # as the workflow runs it
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps(dict(wall_s=time.perf_counter() - t, segment_s=t_seg, peak_rss_mb=int(hwm) / 1024,
                      n_tiles=res["n_tiles"], n_pieces=st["n_pieces"], tissue_area_mm2=st["tissue_area_mm2"])))
"""


def write_slide(path: Path, width: int, height: int, mpp: float) -> None:
    import openslide
    import tifffile

    sys.path.insert(0, str(REPO))
    from ghanet_pipeline import wsi

    with openslide.OpenSlide(str(REPO / "tests/data/cmu_small_region.svs")) as s:
        cmu = wsi.rgba_to_rgb(np.asarray(s.read_region((0, 0), 0, s.dimensions)))
    # 512 px crops of the CMU slide that are mostly tissue
    crops = []
    for y in range(0, cmu.shape[0] - TILE, TILE // 2):
        for x in range(0, cmu.shape[1] - TILE, TILE // 2):
            c = cmu[y:y + TILE, x:x + TILE]
            if (c.min(axis=2) < 200).mean() > 0.6:
                crops.append(np.ascontiguousarray(c))
    rng = np.random.default_rng(0)
    glass = np.clip(243 + rng.normal(0, 2, (TILE, TILE, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    nx, ny = -(-width // TILE), -(-height // TILE)
    # three elliptical pieces of tissue, in tile units
    pieces = [(0.3, 0.35, 0.18, 0.2), (0.7, 0.4, 0.15, 0.25), (0.5, 0.8, 0.25, 0.1)]
    iy, ix = np.mgrid[0:ny, 0:nx]
    tissue = np.zeros((ny, nx), bool)
    for cx, cy, rx, ry in pieces:
        tissue |= ((ix / nx - cx) / rx) ** 2 + ((iy / ny - cy) / ry) ** 2 <= 1

    def tiles():
        for ty in range(ny):
            for tx in range(nx):
                yield crops[(ty * 7919 + tx * 104729) % len(crops)] if tissue[ty, tx] else glass

    px_per_cm = 1e4 / mpp
    tmp = path.with_suffix(".part")
    tifffile.imwrite(tmp, tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(TILE, TILE), photometric="rgb",
                     compression="jpeg", compressionargs={"level": 85}, bigtiff=True,
                     resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER", maxworkers=2)
    tmp.rename(path)
    print(f"{path.name}: {tissue.mean():.0%} of {nx * ny} tiles are tissue, {path.stat().st_size / 1e9:.2f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=100_000)
    ap.add_argument("--height", type=int, default=80_000)
    ap.add_argument("--mpp", type=float, default=0.25)
    a = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    slide = OUT / f"single_level_{a.width}x{a.height}.tif"
    if not slide.exists():
        t = time.perf_counter()
        write_slide(slide, a.width, a.height, a.mpp)
        print(f"generated in {time.perf_counter() - t:.0f} s")
    out = str(OUT / "big_single_level")
    proc = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(slide), out],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    gpx = a.width * a.height / 1e9
    print(f"{a.width} x {a.height} single-level ({gpx:.1f} Gpx): segment + tile {res['wall_s']:.0f} s "
          f"(segment {res['segment_s']:.0f} s), peak RSS {res['peak_rss_mb']:.0f} MB; "
          f"{res['n_pieces']} pieces, {res['tissue_area_mm2']:.0f} mm2, {res['n_tiles']} tiles")


if __name__ == "__main__":
    main()
