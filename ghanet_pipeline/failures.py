"""The run summary: every slide or patient a run could not use, and every job that ran degraded.

Standard library only: the Snakefile writes the summary after every run (onsuccess/onerror), in
the user's Snakemake environment, which has nothing but Snakemake.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .io import atomic_path

FAILURE_COLUMNS = ["stage", "item", "status", "reason", "source"]
SLIDE_STAGES = ("segment", "tile", "extract")
# the words of the slide stages' warnings about parts of a slide that do not decode (segment, extract)
DAMAGE_MARKS = ("OpenSlide cannot decode", "corrupt stored tile")


def failure_summary(results_dir, out_csv=None, slides=None) -> list[dict]:
    """Every slide or patient the run could not use, and why: one row per item.

    - jobs that failed: each job's log is rewritten when the job reruns, so a log holding an error
      is a job that has not succeeded since. Our stages print one `ghanet <stage>: error: ...`
      line; anything else that crashed leaves a traceback, whose last line is taken. With
      `slides`, logs of slides no longer in the run (removed from the sheet) are skipped.
    - what the stages recorded and went on without: patients and slides the cohort stage
      excluded (cohort.on_problem: exclude), slides without a tile (tile.on_empty: record),
      patients `predict` could not score, validation patients that could not be evaluated.
    """
    res = Path(results_dir)
    lines = _job_lines(res / "logs", slides)
    rows = [r for r in lines if r["status"] == "failed"]
    # slides used in part: what the decoder could not read under them (corrupt stored tiles)
    rows += [dict(r, status="damaged") for r in lines if r["status"] == "warning" and r["stage"] in SLIDE_STAGES
             and any(mark in r["reason"] for mark in DAMAGE_MARKS)]
    recorded = [  # (file, stage, id column, status, reason from the row)
        (res / "cohort" / "exclusions.csv", "splits", "item", "excluded", lambda r: f"{r['kind']}: {r['reason']}"),
        (res / "report" / "slides.csv", "tile", "slide_id", None, lambda r: r["reason"]),
        (res / "predict" / "predictions.csv", "predict", "case_id", None, lambda r: r["reason"]),
        (res / "validation" / "unscored.csv", "validate", "case_id", None, lambda r: f"{r['reason']} ({r['models']})"),
    ]
    # patients a training job left out (a patient whose every slide failed, say), once each
    recorded += [(p, "train", "case_id", "excluded", lambda r: r["reason"])
                 for p in sorted(res.glob("models/*/fold_*/excluded.csv"))]
    seen = set()
    for path, stage, id_col, status, reason in recorded:
        for r in _read_csv(path):
            if r.get("status", "") == "ok" or (stage, r[id_col]) in seen:
                continue
            seen.add((stage, r[id_col]))
            rows.append({"stage": r.get("failed_stage") or stage, "item": r[id_col], "status": status or r["status"],
                         "reason": reason(r), "source": str(path)})
    if out_csv is not None:
        with atomic_path(out_csv) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, FAILURE_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
    return rows


def job_warnings(results_dir, slides=None) -> list[dict]:
    """Jobs that succeeded degraded (say, a GPU job that found no GPU): their `warning:` lines."""
    return [r for r in _job_lines(Path(results_dir) / "logs", slides) if r["status"] == "warning"]


def _job_lines(logs: Path, slides=None) -> list[dict]:
    rows = []
    for log in sorted(logs.rglob("*.log")) if logs.is_dir() else []:
        stage = log.parent.name if log.parent != logs else log.stem
        if slides is not None and stage in SLIDE_STAGES and log.stem not in slides:
            continue
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ghanet ") and ": error: " in line]
        row = {"stage": stage, "item": log.stem, "source": str(log)}
        if errors:
            rows.append({**row, "status": "failed", "reason": errors[-1].split(": error: ", 1)[1]})
        elif any(line.startswith("Traceback") for line in lines):
            rows.append({**row, "status": "failed", "reason": lines[-1]})
        else:
            rows += [{**row, "status": "warning", "reason": line.split(": warning: ", 1)[1]}
                     for line in lines if line.startswith("ghanet ") and ": warning: " in line]
    return rows


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def read_failures(path) -> list[dict]:
    """The failure summary's rows (none when there is no summary yet), for the report."""
    return _read_csv(Path(path))
