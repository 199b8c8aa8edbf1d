"""What the HTML report of a 1,000-slide cohort embeds: its slide QC and heatmap contact sheets.

    python benchmarks/bench_report_size.py --results results [--slides 1000]

Takes a finished run's real images (its segment and tile QC thumbnails and its heatmaps, from
`--results`), cycles them over --slides slide ids, and makes the pages the report shows with the
workflow's own code (`report.qc_gallery`, `heatmap.write_gallery`), as the slide report and one
heatmap job per held-out slide would. Prints their size and the HTML report that follows:
pages x 4/3 (base64) plus the part of the report that does not grow with slides (--fixed-mb,
measured on the default demo's report: 4.5 MB). A noise image stands in for the heatmaps as the
worst case a JPEG page can be.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ghanet_pipeline import formats, heatmap, report  # noqa: E402


def _mb(paths) -> float:
    return sum(Path(p).stat().st_size for p in paths) / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, help="a finished run's results folder")
    ap.add_argument("--slides", type=int, default=1000)
    ap.add_argument("--fixed-mb", type=float, default=4.5)
    a = ap.parse_args()
    res = Path(a.results)
    qc = sorted(res.glob("segment/*.qc.jpg"))
    maps = sorted(res.glob("**/heatmaps/**/*.heatmap.png"))
    if not qc or not maps:
        raise SystemExit(f"{res}: needs segment/*.qc.jpg and heatmaps/*.heatmap.png of a finished run")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        ids = [f"S{i:05d}" for i in range(a.slides)]
        for i, sid in enumerate(ids):
            src = qc[i % len(qc)]
            shutil.copy(src, work / f"{sid}.seg.jpg")
            shutil.copy(src.parent.parent / "tile" / src.name, work / f"{sid}.tile.jpg")
        table = pd.DataFrame({"slide_id": ids, "n_tiles": 100, "status": "ok"})
        qc_pages = report.qc_gallery(table, [str(work / "{slide}.seg.jpg"), str(work / "{slide}.tile.jpg")],
                                     work / "qc")
        print(f"slide QC: {len(qc)} real thumbnail pairs cycled over {a.slides} slides -> {len(qc_pages)} pages, "
              f"{_mb(qc_pages):.1f} MB")
        rows = {"qc": _mb(qc_pages)}
        noise = work / "noise.png"
        formats.write_image(noise, np.random.default_rng(0).integers(0, 256, (1400, 2000, 3), dtype=np.uint8))
        for kind, sources in (("heatmaps", maps), ("heatmaps, worst case (noise)", [noise])):
            out = work / kind.split(",")[0].replace(" ", "_") / ("worst" if "worst" in kind else "real")
            out.mkdir(parents=True)
            for i, sid in enumerate(ids):
                shutil.copy(sources[i % len(sources)], out / f"{sid}.heatmap.png")
            pages = heatmap.write_gallery(out)
            rows[kind] = _mb(pages)
            print(f"{kind}: {len(sources)} image(s) cycled over {a.slides} slides -> {len(pages)} pages, "
                  f"{rows[kind]:.1f} MB", flush=True)
        for worst in (False, True):
            pages = rows["qc"] + rows["heatmaps, worst case (noise)" if worst else "heatmaps"]
            print(f"HTML report of {a.slides} slides{' (worst-case heatmaps)' if worst else ''}: "
                  f"{pages:.1f} MB of pages x 4/3 + {a.fixed_mb} MB = {pages * 4 / 3 + a.fixed_mb:.1f} MB; "
                  f"report.zip about {pages + a.fixed_mb:.1f} MB")


if __name__ == "__main__":
    main()
