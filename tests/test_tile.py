import h5py
import numpy as np
import pytest

from conftest import CMU_SLIDE
from ghanet_pipeline import formats, segment, tile
from ghanet_pipeline.config import validate_config

CFG = validate_config({})


def test_grid_coverage_is_exact_for_a_square_with_a_hole():
    # tissue: a 1000 x 1000 square at (100, 100) with a 200 x 200 hole at (500, 500)
    sq = np.array([[100, 100], [1100, 100], [1100, 1100], [100, 1100]], float)
    hole = np.array([[500, 500], [700, 500], [700, 700], [500, 700]], float)
    coords, cov = tile.tile_grid([[sq, hole]], (2000, 1500), 100, 0.5)
    # tiles fully inside the square, minus the 4 covered by the hole
    inside = {(x, y) for x in range(100, 1100, 100) for y in range(100, 1100, 100)}
    inside -= {(500, 500), (600, 500), (500, 600), (600, 600)}
    assert {tuple(c) for c in coords} == inside
    assert np.allclose(cov, 1.0)
    # nothing off the slide: a slide of 950 px keeps only full tiles
    coords, _ = tile.tile_grid([[sq]], (950, 950), 100, 0.5)
    assert coords.max() <= 950 - 100


def _run(tmp_path, slide, sid, params=None, **kw):
    seg = {k: tmp_path / f"{sid}.{k}" for k in ("geojson", "png", "json")}
    segment.run(str(slide), sid, CFG["segment"], geojson=seg["geojson"], qc_png=seg["png"],
                stats_json=seg["json"], **kw)
    res = tile.run(str(slide), sid, params or CFG["tile"], contours=seg["geojson"],
                   coords_h5=tmp_path / f"{sid}.h5", qc_png=tmp_path / f"{sid}.tile.png", **kw)
    return res, *formats.read_coords(tmp_path / f"{sid}.h5")


def test_real_cmu_slide_tiles(tmp_path):
    res, coords, attrs = _run(tmp_path, CMU_SLIDE, "cmu")
    # ~0.5 mm2 of tissue in 128 um tiles: a few dozen tiles
    assert 15 <= len(coords) <= 45
    # 0.499 mpp is within tolerance of 0.5: read 256 px at level 0, no resize
    assert attrs["patch_level"] == 0 and attrs["patch_size_level0"] == 256 and attrs["read_size"] == 256
    assert attrs["level0_mpp"] == pytest.approx(0.499) and attrs["target_mpp"] == 0.5
    assert (coords % 256 == 0).all() and coords.dtype == np.int64
    assert (coords[:, 0] + 256 <= 2220).all() and (coords[:, 1] + 256 <= 2967).all()
    # a CLAM-style reader sees what it expects
    with h5py.File(tmp_path / "cmu.h5") as f:
        assert f["coords"].shape == (len(coords), 2)
        assert {"patch_size", "patch_level", "downsample"} <= set(f["coords"].attrs)


def test_physical_size_on_a_finer_scan(demo_cohort, tmp_path):
    out, sheet = demo_cohort
    # the same file declared as 0.25 mpp (a 40x scan): 256 px at 0.5 mpp is 512 level-0 px
    res, coords, attrs = _run(tmp_path, sheet.path[0], "fine", sheet_mpp=0.25)
    assert attrs["patch_size_level0"] == 512 and attrs["patch_level"] == 0 and attrs["read_size"] == 512
    # and at 1.0 mpp target, level 1 (4x downsample, 1.0 mpp) is read without resizing
    params = dict(CFG["tile"], target_mpp=1.0, min_coverage=0.01, max_ink_fraction=1.0)  # 2 tiles, both inked
    res, coords, attrs = _run(tmp_path, sheet.path[0], "fine1", params=params, sheet_mpp=0.25)
    assert attrs["patch_level"] == 1 and attrs["read_size"] == 256 and attrs["patch_size_level0"] == 1024


def test_min_coverage_controls_tile_count(demo_cohort, tmp_path):
    out, sheet = demo_cohort
    counts = [len(_run(tmp_path, sheet.path[0], f"c{c}", params=dict(CFG["tile"], min_coverage=c))[1])
              for c in (0.1, 0.5, 0.95)]
    assert counts[0] > counts[1] > counts[2] > 0
