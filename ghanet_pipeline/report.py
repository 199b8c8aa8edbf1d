"""Cohort-level slide QC table: what segmentation and tiling made of every slide.

Reads only the stages' output files (segment stats JSON, coords HDF5). Slides with no tile are
flagged, so a slide that was kept going with `tile.on_empty: record` is never silently empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import formats
from .io import atomic_path


def slide_table(stats_paths: list, coords_paths: list) -> pd.DataFrame:
    rows = []
    for stats_path, coords_path in zip(stats_paths, coords_paths):
        stats = json.loads(Path(stats_path).read_text())
        coords, attrs = formats.read_coords(coords_path)
        n = len(coords)
        rows.append({
            "slide_id": stats["slide_id"], "n_tiles": n, "n_pieces": stats["n_pieces"],
            "n_holes": stats["n_holes"], "tissue_area_mm2": stats["tissue_area_mm2"],
            "pen_area_mm2": stats["pen_area_mm2"], "level0_mpp": stats["level0_mpp"],
            "patch_level": attrs.get("patch_level"), "patch_size_level0": attrs.get("patch_size_level0"),
            "status": "ok" if n else "no tiles",
            "reason": "" if n else ("no tissue found" if stats["n_pieces"] == 0 else
                                    "no tile reaches tile.min_coverage"),
        })
    return pd.DataFrame(rows)


def run(stats_paths: list, coords_paths: list, out_csv) -> pd.DataFrame:
    table = slide_table(stats_paths, coords_paths)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


FAILURE_COLUMNS = ["stage", "item", "status", "reason", "source"]


def failure_summary(results_dir, out_csv=None, slides=None) -> pd.DataFrame:
    """Every slide or patient the run could not use, and why: one row per item.

    - jobs that failed: each job's log is rewritten when the job reruns, so a log holding an error
      is a job that has not succeeded since. Our stages print one `ghanet <stage>: error: ...`
      line; anything else that crashed leaves a traceback, whose last line is taken. With
      `slides`, logs of slides no longer in the run (removed from the sheet) are skipped.
    - what the stages recorded and went on without: patients and slides the cohort stage
      excluded (cohort.on_problem: exclude), slides without a tile (tile.on_empty: record),
      patients `predict` could not score.
    """
    res = Path(results_dir)
    rows = _failed_jobs(res / "logs", slides)
    recorded = [  # (file, stage, id column, status, reason from the row)
        (res / "cohort" / "exclusions.csv", "splits", "item", "excluded", lambda r: f"{r['kind']}: {r['reason']}"),
        (res / "report" / "slides.csv", "tile", "slide_id", None, lambda r: r["reason"]),
        (res / "predict" / "predictions.csv", "predict", "case_id", None, lambda r: r["reason"]),
    ]
    for path, stage, id_col, status, reason in recorded:
        if not path.is_file():
            continue
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "status" in table.columns:
            table = table[table["status"] != "ok"]
        for _, r in table.iterrows():
            rows.append({"stage": stage, "item": r[id_col], "status": status or r["status"],
                         "reason": reason(r), "source": str(path)})
    table = pd.DataFrame(rows, columns=FAILURE_COLUMNS)
    if out_csv is not None:
        with atomic_path(out_csv) as tmp:
            table.to_csv(tmp, index=False)
    return table


SLIDE_STAGES = ("segment", "tile", "extract")


def _failed_jobs(logs: Path, slides=None) -> list[dict]:
    rows = []
    for log in sorted(logs.rglob("*.log")) if logs.is_dir() else []:
        stage = log.parent.name if log.parent != logs else log.stem
        if slides is not None and stage in SLIDE_STAGES and log.stem not in slides:
            continue
        lines = [l.strip() for l in log.read_text(errors="replace").splitlines() if l.strip()]
        ours = [l for l in lines if ": error: " in l and l.startswith("ghanet ")]
        if ours:
            reason = ours[-1].split(": error: ", 1)[1]
        elif any(l.startswith("Traceback") for l in lines):
            reason = lines[-1]
        else:
            continue
        rows.append({"stage": stage, "item": log.stem, "status": "failed", "reason": reason, "source": str(log)})
    return rows


def read_failures(path) -> list[dict]:
    """The failure summary's rows (none when there is no summary yet), for the report."""
    path = Path(path)
    if not path.is_file():
        return []
    return pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
