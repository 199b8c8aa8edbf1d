"""Several slides per job (slides_per_job > 1): the same results as a job per slide, in far fewer
jobs, with each slide's own outputs and log, the encoder loaded once per job, and reruns that redo
only the slides that changed."""

import os
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import CMU_SLIDE, TINY_DEMO, job_counts, snakemake, write_config

FEATURES = "results/features/efficientnet_lite0"


def test_a_slide_is_up_to_date_by_its_stamp_and_its_files_times(tmp_path):
    from ghanet_pipeline import stamps

    slide, out = tmp_path / "slide.svs", tmp_path / "out.h5"
    slide.write_text("pixels")
    out.write_text("features")
    os.utime(slide, ns=(1, 1))
    args = {"params": '{"encoder": "uni"}', "slide": str(slide)}
    assert not stamps.up_to_date(args, [str(slide)], [str(out)])  # never stamped
    stamps.write_stamp(args, [str(out)])
    assert stamps.stamp_path(out).name == ".out.h5.stamp.json"
    assert stamps.up_to_date(args, [str(slide)], [str(out)])
    assert not stamps.up_to_date({**args, "params": '{"encoder": "virchow"}'}, [str(slide)], [str(out)])
    assert not stamps.up_to_date(args, [str(slide)], [str(out), str(tmp_path / "gone.jpg")])
    assert not stamps.up_to_date(args, [str(tmp_path / "moved.svs")], [str(out)])
    os.utime(slide)  # the slide replaced after its outputs were made
    assert not stamps.up_to_date(args, [str(slide)], [str(out)])
    stamps.clear_stamp([str(out)])
    assert not stamps.stamp_path(out).exists()


def _features(run, sid):
    with h5py.File(run / f"{FEATURES}/{sid}.h5") as f:
        return f["features"][:], f["coords"][:]


@pytest.mark.slow
def test_chunked_run_equals_the_run_of_a_job_per_slide(tiny_run, tmp_path):
    """The tiny demo with 3 slides per job: 5 slide jobs per stage instead of 11, and bit for bit the
    features, risks, predictions and validation of the run with a job per slide."""
    cfg = write_config(tmp_path / "config.yaml", dict(TINY_DEMO, slides_per_job=3))
    proc = snakemake(tmp_path, configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_counts(proc.stdout + proc.stderr)
    assert jobs["segment_chunk"] == jobs["tile_chunk"] == jobs["extract_chunk"] == 5  # 7 slides in 3, 1 new patient + 3 held out in 2
    assert not {"segment", "tile", "extract"} & set(jobs)
    sheet = pd.read_csv(tmp_path / "results/demo/slides.csv")
    new = pd.read_csv(tmp_path / "results/demo/new_patients.csv")
    held_out = pd.read_csv(tmp_path / "results/demo/validation.csv")
    for sid in [*sheet.slide_id, *new.slide_id, *held_out.slide_id]:
        mine, theirs = _features(tmp_path, sid), _features(tiny_run, sid)
        assert np.array_equal(mine[0], theirs[0]) and np.array_equal(mine[1], theirs[1]), sid
        for stage in ("segment", "tile", "extract"):  # each slide's own log, as with a job per slide
            assert f"{sid}" in (tmp_path / f"results/logs/{stage}/{sid}.log").read_text()
    for model in ("ghanet", "abmil", "snn"):
        for k in range(2):
            mine = pd.read_csv(tmp_path / f"results/models/{model}/fold_{k}/risks.csv")
            assert mine.equals(pd.read_csv(tiny_run / f"results/models/{model}/fold_{k}/risks.csv")), (model, k)
    assert pd.read_csv(tmp_path / "results/predict/predictions.csv").equals(
        pd.read_csv(tiny_run / "results/predict/predictions.csv"))
    assert pd.read_csv(tmp_path / "results/validation/validation.csv").equals(
        pd.read_csv(tiny_run / "results/validation/validation.csv"))
    # the encoder is loaded (and its weights hashed) once per job, not once per slide
    for log in (tmp_path / "results/logs/extract_chunks").glob("*.log"):
        assert log.read_text().count("loaded once for this job") == 1, log.name
    table = pd.read_csv(tmp_path / f"{FEATURES}/chunks/cohort00000.tsv", sep="\t")
    assert list(table.slide_id) == list(sheet.slide_id[:3]) and set(table.status) == {"done"}
    again = snakemake(tmp_path, "-n", configfile=cfg)
    assert "Nothing to be done" in again.stdout + again.stderr

    # back to a job per slide: no slide is redone; but an edit of a setting the slides' outputs depend
    # on redoes every slide, though Snakemake has no record of the settings the chunks used (it planned
    # nothing before: the stale outputs were taken as current)
    per_slide = dict(TINY_DEMO, slides_per_job=1)  # the folder's config.yaml says 3
    jobs = job_counts(snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "per_slide.yaml", per_slide)).stdout)
    assert not {"segment", "tile", "extract", "segment_chunk"} & set(jobs) and jobs, jobs
    edited = write_config(tmp_path / "edited.yaml", dict(per_slide, segment={"min_tissue_area_mm2": 0.05}))
    proc = snakemake(tmp_path, "-n", configfile=edited)
    jobs = job_counts(proc.stdout)
    assert jobs.get("segment") == jobs.get("tile") == jobs.get("extract") == 11, jobs
    assert "results/.provenance/segment/DEMO-000-S1" in proc.stdout  # the reason: its provenance marker
    edited = write_config(tmp_path / "edited.yaml", dict(per_slide, extract={"channels_last": False}))
    jobs = job_counts(snakemake(tmp_path, "-n", configfile=edited).stdout)
    assert jobs.get("extract") == 11 and not {"segment", "tile"} & set(jobs), jobs
    # and the other way: outputs of jobs per slide (the tiny run), an edit with chunks redoes them
    edited = write_config(tmp_path / "chunked_edit.yaml",
                          dict(TINY_DEMO, slides_per_job=3, segment={"min_tissue_area_mm2": 0.05}))
    jobs = job_counts(snakemake(tiny_run, "-n", configfile=edited).stdout)
    assert jobs.get("segment_chunk") == jobs.get("tile_chunk") == jobs.get("extract_chunk") == 5, jobs


def _slide_cohort(tmp_path, per_job):
    """Four slides, one of them not a slide file, in chunks of `per_job`; slide work only."""
    (tmp_path / "slides").mkdir()
    for sid in ("s1", "s2", "s3"):
        shutil.copy(CMU_SLIDE, tmp_path / f"slides/{sid}.svs")
    (tmp_path / "slides/bad.svs").write_text("not a slide")
    pd.DataFrame({"slide_id": ["s1", "bad", "s2", "s3"], "case_id": ["p1", "p2", "p3", "p4"],
                  "path": [f"slides/{s}.svs" for s in ("s1", "bad", "s2", "s3")]}).to_csv(
        tmp_path / "slides.csv", index=False)
    return write_config(tmp_path / "config.yaml", {"slides_per_job": per_job,
                                                   "cohort": {"slide_sheet": "slides.csv"}})


@pytest.mark.slow
def test_a_bad_slide_fails_only_itself_and_a_rerun_redoes_only_it(tmp_path):
    cfg = _slide_cohort(tmp_path, 3)
    proc = snakemake(tmp_path, "--keep-going", configfile=cfg)
    assert proc.returncode != 0
    # the chunk's other slides were segmented; the next chunk went on to its features
    assert (tmp_path / "results/segment/s1.geojson").exists() and (tmp_path / "results/segment/s2.geojson").exists()
    assert (tmp_path / f"{FEATURES}/s3.h5").exists()
    # the failure summary names the slide and why, once; the job's log counts, its slide's log says why
    failures = pd.read_csv(tmp_path / "results/report/failures.csv")
    assert list(failures.item) == ["bad"] and list(failures.stage) == ["segment"]
    assert "not a whole-slide image" in failures.reason[0] and failures.source[0].endswith("logs/segment/bad.log")
    chunk_log = (tmp_path / "results/logs/segment_chunks/cohort00000.log").read_text()
    assert "ghanet segment: 1 of 3 slides failed: bad;" in chunk_log and "Traceback" not in chunk_log

    # the file fixed: its chunk reruns, and in it only that slide is segmented
    before = (tmp_path / "results/segment/s1.geojson").stat().st_mtime_ns
    shutil.copy(CMU_SLIDE, tmp_path / "slides/bad.svs")
    proc = snakemake(tmp_path, configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results/segment/chunks/cohort00000.tsv", sep="\t").set_index("slide_id")
    assert table.status.to_dict() == {"s1": "up to date", "bad": "done", "s2": "up to date"}
    assert (tmp_path / "results/segment/s1.geojson").stat().st_mtime_ns == before
    assert pd.read_csv(tmp_path / "results/report/failures.csv").empty
    # a slide file replaced: its chunk reruns, the other chunk does not
    (tmp_path / "slides/s3.svs").touch()
    plan = snakemake(tmp_path, "-n", "-p", configfile=cfg)
    assert job_counts(plan.stdout)["segment_chunk"] == 1 and '"slide_id": "s3"' in plan.stdout

    # run it; then a job per slide from here: every slide is up to date as it is, none is redone
    assert snakemake(tmp_path, configfile=cfg).returncode == 0
    per_slide = write_config(tmp_path / "per_slide.yaml", {"slides_per_job": 1, "cohort": {"slide_sheet": "slides.csv"}})
    jobs = job_counts(snakemake(tmp_path, "-n", configfile=per_slide).stdout)
    assert jobs and not {"segment", "tile", "extract"} & set(jobs), jobs


def test_thousands_of_slides_plan_as_a_few_jobs_that_fit_a_command_line(tmp_path):
    """4,000 slides at 200 per job: 20 jobs per slide stage, each command well under bash's 128 KB
    for one argument; too many slides per job for the paths' length is one line before any job."""
    n = 4000
    ids = [f"PATIENT-{i:05d}" for i in range(n)]
    pd.DataFrame({"slide_id": [f"{p}-SLIDE-1" for p in ids], "case_id": ids,
                  "path": [f"/data/slides/{p}-SLIDE-1.svs" for p in ids], "mpp": 0.25}).to_csv(
        tmp_path / "slides.csv", index=False)
    cfg = write_config(tmp_path / "config.yaml", {"slides_per_job": 200, "cohort": {
        "slide_sheet": str(tmp_path / "slides.csv")}})
    proc = snakemake(tmp_path, "-n", "-p", configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = job_counts(proc.stdout)
    assert jobs["segment_chunk"] == jobs["tile_chunk"] == jobs["extract_chunk"] == 20
    commands = [line for line in proc.stdout.splitlines() if "-m ghanet_pipeline" in line]
    assert len(commands) == 62 and max(map(len, commands)) < 40_000
    # paths ten times longer, 500 slides per job: refused with the number that fits
    pd.read_csv(tmp_path / "slides.csv").assign(path=lambda d: "/scanner-export" * 20 + d.path).to_csv(
        tmp_path / "long.csv", index=False)
    cfg = write_config(tmp_path / "config.yaml", {"slides_per_job": 500, "cohort": {
        "slide_sheet": str(tmp_path / "long.csv")}})
    proc = snakemake(tmp_path, "-n", configfile=cfg)
    assert proc.returncode != 0
    assert "more than a command line holds; set slides_per_job to" in proc.stdout + proc.stderr
