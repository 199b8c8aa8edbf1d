"""Slide sheets as users keep them: extra columns kept and carried to the slide table, relative
paths taken from the sheet's folder, and `ghanet init` writing a sheet from a folder of slides."""

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import error_line, run_ghanet
from ghanet_pipeline import report
from ghanet_pipeline.config import load_config
from ghanet_pipeline.demo import write_pyramid
from ghanet_pipeline.sheet import read_slides


def test_extra_columns_are_kept_and_paths_are_relative_to_the_sheet(demo_cohort, tmp_path):
    out, sheet = demo_cohort
    project = tmp_path / "project"
    (project / "wsi").mkdir(parents=True)
    shutil.copy(sheet.path[0], project / "wsi/a.tiff")
    pd.DataFrame({"slide_id": ["a"], "case_id": ["P1"], "path": ["wsi/a.tiff"], "scanner": ["GT450"],
                  "site": ["Leeds"]}).to_csv(project / "slides.csv", index=False)
    row = read_slides(project / "slides.csv")["a"]
    assert row["path"] == str(project / "wsi/a.tiff")  # from the sheet's folder, not the working one
    assert row["scanner"] == "GT450" and row["site"] == "Leeds" and row["mpp"] is None
    # a sheet of older results, relative to the working folder, still reads where only that exists
    old = tmp_path / "results/demo"
    old.mkdir(parents=True)
    pd.DataFrame({"slide_id": ["a"], "case_id": ["P1"], "path": ["project/wsi/a.tiff"]}).to_csv(old / "s.csv", index=False)
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert read_slides("results/demo/s.csv")["a"]["path"] == "project/wsi/a.tiff"
    finally:
        os.chdir(cwd)
    # the slide table carries them next to each slide's QC
    table = pd.DataFrame({"slide_id": ["a"], "n_tiles": [3], "status": ["ok"]})
    carried = report.with_sheet_columns(table, [project / "slides.csv"])
    assert list(carried.columns) == ["slide_id", "case_id", "scanner", "site", "n_tiles", "status"]
    assert carried.iloc[0].tolist() == ["a", "P1", "GT450", "Leeds", 3, "ok"]


def test_init_writes_a_sheet_and_a_config_from_a_folder(demo_cohort, tmp_path):
    _, sheet = demo_cohort
    slides = tmp_path / "slides" / "batch1"
    slides.mkdir(parents=True)
    shutil.copy(sheet.path[0], slides / "TCGA-2F-A9KO-01Z-00-DX1.tiff")
    shutil.copy(sheet.path[1], slides / "other slide.tiff")
    write_pyramid(slides / "no_mpp.tif", np.full((1024, 1024, 3), 230, np.uint8), None)
    (slides / "notes.txt").write_text("not a slide")
    work = tmp_path / "work"
    work.mkdir()
    args = ("init", "--slides", tmp_path / "slides", "--sheet", work / "slides.csv", "--config-out",
            work / "config.yaml")
    proc = run_ghanet(*args)
    assert proc.returncode == 0, proc.stderr
    assert "3 slides of 3 patients" in proc.stdout and "no usable resolution, fill its mpp column: no_mpp" in proc.stdout
    written = pd.read_csv(work / "slides.csv")
    assert sorted(written.slide_id) == ["TCGA-2F-A9KO-01Z-00-DX1", "no_mpp", "other_slide"]
    by_id = written.set_index("slide_id")
    assert by_id.at["TCGA-2F-A9KO-01Z-00-DX1", "case_id"] == "TCGA-2F-A9KO"  # the patient barcode
    assert by_id.at["other_slide", "mpp"] == pytest.approx(0.5) and np.isnan(by_id.at["no_mpp", "mpp"])
    assert by_id.at["other_slide", "path"] == "../slides/batch1/other slide.tiff"  # relative to the sheet
    rows = read_slides(work / "slides.csv")
    assert all(__import__("os").path.isfile(r["path"]) for r in rows.values())
    cfg = load_config(work / "config.yaml")
    assert cfg["cohort"]["slide_sheet"] == str(work / "slides.csv")
    # never overwrites
    line = error_line(run_ghanet(*args))
    assert f"{work / 'slides.csv'} exists" in line
