"""Every bad input of the slide stages: one clear line naming the item and the fix, nothing left behind."""


import numpy as np
import pandas as pd

from conftest import CMU_SLIDE, error_line, run_ghanet
from ghanet_pipeline.demo import write_pyramid


def _segment(tmp_path, slide, sid="bad", *extra):
    return run_ghanet("segment", "--slide", slide, "--slide-id", sid, *extra,
                      "--geojson", tmp_path / "o.geojson", "--qc", tmp_path / "o.png",
                      "--stats", tmp_path / "o.json")


def _outputs(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("o.", ".o.")))


def test_missing_slide_file(tmp_path):
    line = error_line(_segment(tmp_path, tmp_path / "nope.svs", "S1"))
    assert "slide S1" in line and "nope.svs" in line and "not found" in line and "path" in line
    assert _outputs(tmp_path) == []


def test_file_that_is_not_a_slide(tmp_path):
    fake = tmp_path / "notes.svs"
    fake.write_text("patient notes, not an image\n")
    line = error_line(_segment(tmp_path, fake, "S2"))
    assert "slide S2" in line and "not a whole-slide image" in line
    assert _outputs(tmp_path) == []


def test_truncated_slide(tmp_path):
    cut = tmp_path / "cut.svs"
    data = CMU_SLIDE.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    line = error_line(_segment(tmp_path, cut, "S3"))
    assert "slide S3" in line and "corrupt or truncated" in line
    assert _outputs(tmp_path) == []


def test_slide_without_mpp(tmp_path):
    path = tmp_path / "nompp.tiff"
    write_pyramid(path, np.full((1024, 1024, 3), 240, np.uint8), mpp=None)
    line = error_line(_segment(tmp_path, path, "S4"))
    assert "slide S4" in line and "microns-per-pixel" in line and "mpp" in line and "default_mpp" in line
    # the sheet's mpp (or config default) is the fix
    assert _segment(tmp_path, path, "S4", "--mpp", "0.5").returncode == 0


def test_slide_with_no_tissue_fails_tile_or_records_zero(tmp_path, blank_slide):
    assert _segment(tmp_path, blank_slide, "blank").returncode == 0
    common = ["--slide", blank_slide, "--slide-id", "blank", "--contours", tmp_path / "o.geojson",
              "--coords", tmp_path / "t.h5", "--qc", tmp_path / "t.png"]
    line = error_line(run_ghanet("tile", *common))
    assert "slide blank" in line and "no tile" in line and "on_empty" in line
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


def test_duplicate_slide_id_in_sheet(tmp_path):
    sheet = tmp_path / "slides.csv"
    pd.DataFrame({"slide_id": ["A", "B", "A"], "case_id": ["p1", "p2", "p3"],
                  "path": [str(CMU_SLIDE)] * 3}).to_csv(sheet, index=False)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"cohort:\n  slide_sheet: {sheet}\n")
    line = error_line(run_ghanet("check-config", cfg))
    assert "duplicate slide_id 'A'" in line and str(sheet) in line


def test_bad_slide_sheet_values(tmp_path):
    sheet = tmp_path / "slides.csv"
    pd.DataFrame({"slide_id": ["A B"], "case_id": ["p1"], "path": [str(CMU_SLIDE)]}).to_csv(sheet, index=False)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"cohort:\n  slide_sheet: {sheet}\n")
    line = error_line(run_ghanet("check-config", cfg))
    assert "row 2" in line and "slide_id" in line
    pd.DataFrame({"slide_id": ["A"], "case_id": ["p1"], "path": [str(CMU_SLIDE)], "mpp": [-1]}).to_csv(sheet, index=False)
    assert "mpp" in error_line(run_ghanet("check-config", cfg))
