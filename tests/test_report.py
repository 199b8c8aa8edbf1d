"""The failure summary: every slide or patient a run could not use, from the jobs' logs and from
what the stages recorded and went on without."""

import pandas as pd

from ghanet_pipeline.failures import failure_summary, job_warnings, read_failures


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_failure_summary_gathers_failed_jobs_and_recorded_exclusions(tmp_path):
    res = tmp_path / "results"
    _write(res / "logs/segment/S1.log",
           "ghanet segment: error: slide S1: file not found: /x.svs; fix the `path` column\n")
    _write(res / "logs/extract/S2.log", "Traceback (most recent call last):\n  ...\nMemoryError: out of memory\n")
    _write(res / "logs/tile/S3.log", "ghanet INFO tile S3: 12 tiles\n")  # a job that succeeded
    _write(res / "logs/segment/OLD.log", "ghanet segment: error: slide OLD: file not found\n")  # left the sheet
    _write(res / "logs/train/ghanet_fold_0.log", "ghanet train: error: patient P1 has no patch; set ...\n")
    _write(res / "cohort/exclusions.csv", "item,kind,reason\nP7,bad survival,patient P7: survival_months is -2.0\n")
    _write(res / "report/slides.csv", "slide_id,n_tiles,status,reason\nS4,0,no tiles,no tissue found\nS5,9,ok,\n")
    _write(res / "predict/predictions.csv",
           "case_id,risk,status,reason\nN1,,no tiles,no tissue tile in N1-S1\nN2,0.3,ok,\n")
    table = failure_summary(res, res / "report/failures.csv", slides={"S1", "S2", "S3", "S4", "S5"})
    rows = {(r["stage"], r["item"]): (r["status"], r["reason"]) for r in table}
    assert rows == {
        ("segment", "S1"): ("failed", "slide S1: file not found: /x.svs; fix the `path` column"),
        ("extract", "S2"): ("failed", "MemoryError: out of memory"),
        ("train", "ghanet_fold_0"): ("failed", "patient P1 has no patch; set ..."),
        ("splits", "P7"): ("excluded", "bad survival: patient P7: survival_months is -2.0"),
        ("tile", "S4"): ("no tiles", "no tissue found"),
        ("predict", "N1"): ("no tiles", "no tissue tile in N1-S1"),
    }
    # written atomically, and what the report's Failures section reads back
    assert pd.read_csv(res / "report/failures.csv").shape == (6, 5)
    assert read_failures(res / "report/failures.csv")[0]["item"] == table[0]["item"]
    assert read_failures(res / "report/none.csv") == []


def test_degraded_jobs_are_warnings_not_failures(tmp_path):
    res = tmp_path / "results"
    _write(res / "logs/extract/S1.log", "ghanet extract: warning: the rule asked for a GPU and this job found none "
           "(PyTorch 2.14.1+cpu has no CUDA); running on the CPU\nghanet INFO extract S1: 12 x 1280 features\n")
    _write(res / "logs/extract/S2.log", "ghanet extract: warning: no GPU\nghanet extract: error: slide S2: bad\n")
    assert [(r["item"], r["reason"][:30]) for r in job_warnings(res)] == [("S1", "the rule asked for a GPU and t")]
    assert [r["item"] for r in failure_summary(res)] == ["S2"]
