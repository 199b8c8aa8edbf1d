"""The bad-input catalogue, and every bad input of the slide stages: one clear line naming the item
and the fix, nothing left behind.

Each kind of bad input is checked where its stage is tested; those tests register it with
`@bad_input(kind)` and check the message with `names_item_and_fix`. The first test here makes sure
the catalogue holds every kind we promise.
"""

import importlib
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import CMU_SLIDE, bad_input, error_line, names_item_and_fix, run_ghanet
from ghanet_pipeline.demo import write_pyramid


# the kinds the reliability issue names (ours add to them)
PROMISED = [
    "corrupt or truncated slide", "file that is not a slide", "missing slide file", "slide without mpp",
    "slide with no tissue", "patient without slides", "slide without patient", "missing (NaN) genomic value",
    "non-numeric genomic value", "duplicate slide ids", "negative survival time", "censorship not 0/1",
    "unknown config key", "wrong config type", "encoder weights missing", "feature file of the wrong dimension",
]


def test_the_catalogue_holds_every_kind():
    from conftest import BAD_INPUTS

    for path in sorted(Path(__file__).parent.glob("test_*.py")):  # each registers its kinds on import
        importlib.import_module(path.stem)
    assert [k for k in PROMISED if k not in BAD_INPUTS] == []
    assert len(BAD_INPUTS) >= 20, sorted(BAD_INPUTS)


def _segment(tmp_path, slide, sid="bad", *extra):
    return run_ghanet("segment", "--slide", slide, "--slide-id", sid, *extra,
                      "--geojson", tmp_path / "o.geojson", "--qc", tmp_path / "o.png",
                      "--stats", tmp_path / "o.json")


def _outputs(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("o.", ".o.")))


@bad_input("missing slide file")
def test_missing_slide_file(tmp_path):
    line = error_line(_segment(tmp_path, tmp_path / "nope.svs", "S1"))
    names_item_and_fix(line, "slide S1", "fix the `path` column of the slide sheet")
    assert "slide S1" in line and "nope.svs" in line and "not found" in line and "path" in line
    assert _outputs(tmp_path) == []


@bad_input("file that is not a slide")
def test_file_that_is_not_a_slide(tmp_path):
    fake = tmp_path / "notes.svs"
    fake.write_text("patient notes, not an image\n")
    line = error_line(_segment(tmp_path, fake, "S2"))
    assert "slide S2" in line and "not a whole-slide image" in line
    names_item_and_fix(line, "slide S2", "point the sheet at the slide file")
    assert _outputs(tmp_path) == []


@bad_input("corrupt or truncated slide")
def test_truncated_slide(tmp_path):
    cut = tmp_path / "cut.svs"
    data = CMU_SLIDE.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    line = error_line(_segment(tmp_path, cut, "S3"))
    names_item_and_fix(line, "slide S3", "corrupt or truncated, copy it again from its source")
    assert _outputs(tmp_path) == []


@bad_input("slide without mpp")
def test_slide_without_mpp(tmp_path):
    path = tmp_path / "nompp.tiff"
    write_pyramid(path, np.full((1024, 1024, 3), 240, np.uint8), mpp=None)
    line = error_line(_segment(tmp_path, path, "S4"))
    assert "slide S4" in line and "microns-per-pixel" in line and "mpp" in line and "default_mpp" in line
    # the sheet's mpp (or config default) is the fix
    assert _segment(tmp_path, path, "S4", "--mpp", "0.5").returncode == 0


@bad_input("slide with no tissue")
def test_slide_with_no_tissue_fails_tile_or_records_zero(tmp_path, blank_slide):
    assert _segment(tmp_path, blank_slide, "blank").returncode == 0
    common = ["--slide", blank_slide, "--slide-id", "blank", "--contours", tmp_path / "o.geojson",
              "--coords", tmp_path / "t.h5", "--qc", tmp_path / "t.png"]
    line = error_line(run_ghanet("tile", *common))
    assert "no tile" in line
    names_item_and_fix(line, "slide blank", "set tile.on_empty: record")
    assert not (tmp_path / "t.h5").exists()
    proc = run_ghanet("tile", *common, "--params", '{"on_empty": "record"}')
    assert proc.returncode == 0, proc.stderr
    from ghanet_pipeline.formats import read_coords

    coords, attrs = read_coords(tmp_path / "t.h5")
    assert coords.shape == (0, 2) and attrs["patch_size"] == 256
    # and the cohort's slide report says so
    proc = run_ghanet("slide-report", "--stats", tmp_path / "o.json", "--coords", tmp_path / "t.h5",
                      "--out", tmp_path / "slides.csv")
    assert proc.returncode == 0 and "1 without tiles (blank)" in proc.stderr
    row = pd.read_csv(tmp_path / "slides.csv").iloc[0]
    assert row.slide_id == "blank" and row.n_tiles == 0 and row.status == "no tiles"
    assert row.reason == "no tissue found"


@bad_input("duplicate slide ids")
def test_duplicate_slide_id_in_sheet(tmp_path):
    sheet = tmp_path / "slides.csv"
    pd.DataFrame({"slide_id": ["A", "B", "A"], "case_id": ["p1", "p2", "p3"],
                  "path": [str(CMU_SLIDE)] * 3}).to_csv(sheet, index=False)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"cohort:\n  slide_sheet: {sheet}\n")
    line = error_line(run_ghanet("check-config", cfg))
    assert "duplicate slide_id 'A'" in line and str(sheet) in line
    names_item_and_fix(line, "'A'", "each slide must appear once")


@bad_input("invalid slide sheet values")
def test_bad_slide_sheet_values(tmp_path):
    sheet = tmp_path / "slides.csv"
    pd.DataFrame({"slide_id": ["A B"], "case_id": ["p1"], "path": [str(CMU_SLIDE)]}).to_csv(sheet, index=False)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"cohort:\n  slide_sheet: {sheet}\n")
    line = error_line(run_ghanet("check-config", cfg))
    names_item_and_fix(line, "row 2", "see the description of 'slide_id'")
    pd.DataFrame({"slide_id": ["A"], "case_id": ["p1"], "path": [str(CMU_SLIDE)], "mpp": [-1]}).to_csv(sheet, index=False)
    assert "mpp" in error_line(run_ghanet("check-config", cfg))


@bad_input("a job run by a Python without the package's dependencies")
def test_a_job_in_the_wrong_environment_names_the_module_and_the_interpreter(tmp_path):
    """Snakemake started from a venv that was not activated runs each job's `python` from PATH, a
    Python without our dependencies: the job's one line says so, not 'this is a bug'."""
    import subprocess
    import sys

    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([str(python), "-m", "ghanet_pipeline", "tile", "--slide", CMU_SLIDE, "--slide-id", "S"],
                          capture_output=True, text=True, env=env)
    line = error_line(proc)
    assert line.startswith("ghanet tile: error: the job's Python") and "Traceback" not in proc.stderr
    names_item_and_fix(line, f"({python}) has no module", "activate that environment before running snakemake")
    assert "--use-conda" in line and "this is a bug" not in line

    # a dependency imported later, inside a stage, reads the same
    from ghanet_pipeline.errors import report_unexpected

    with open(tmp_path / "log", "w") as fh:
        try:
            importlib.import_module("h5py_not_installed_here")
        except ImportError as exc:
            why = report_unexpected("extract", exc, fh)
    assert why.endswith("or run with --use-conda") and "'h5py_not_installed_here'" in why
    assert (tmp_path / "log").read_text().strip().splitlines() == [f"ghanet extract: error: {why}"]
