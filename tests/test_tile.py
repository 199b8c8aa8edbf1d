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


def _skimage_coverage(polygons, nx, ny, ps0):
    """The coverage as it was computed before the scanline fill: scikit-image's draw.polygon per
    ring at 16 x 16 samples a tile (the reference the fill must equal)."""
    from skimage import draw

    k = tile.SAMPLES_PER_TILE
    mask = np.zeros((ny * k, nx * k), bool)
    for rings in polygons:
        for i, ring in enumerate(rings):
            uv = np.asarray(ring, float) * (k / ps0) - 0.5
            rr, cc = draw.polygon(uv[:, 1], uv[:, 0], mask.shape)
            mask[rr, cc] = i == 0
    return mask.reshape(ny, k, nx, k).mean(axis=(1, 3))


def test_the_scanline_fill_is_skimages_polygon_fill(tmp_path, demo_cohort):
    """Sample for sample, on rings built to put vertices and edges on sample centres (where the
    fill's ties are decided), self-intersecting ones, and the real and demo slides' outlines."""
    from skimage import draw

    rng = np.random.default_rng(0)
    for t in range(600):
        n = int(rng.integers(3, 40))
        if t % 2:  # star-shaped (simple)
            ang, rad = np.sort(rng.uniform(0, 2 * np.pi, n)), rng.uniform(2, 18, n)
            xs, ys = 20 + rad * np.cos(ang), 15 + rad * np.sin(ang)
        else:  # any order: self-intersecting
            xs, ys = rng.uniform(-2, 42, n), rng.uniform(-2, 32, n)
        q = (1, 2, 32)[t % 3]  # on the sample lattice, its halves, or 1/32 (a level-0 pixel's share)
        xs, ys = np.round(xs * q) / q, np.round(ys * q) / q
        want = np.zeros((30, 40), bool)
        rr, cc = draw.polygon(ys, xs, want.shape)
        want[rr, cc] = True
        got = np.zeros((30, 40), bool)
        tile._fill_ring(got, xs, ys, True)
        assert (got == want).all(), (t, np.argwhere(got != want)[:5])
    _, sheet = demo_cohort
    for slide, sid in ((CMU_SLIDE, "cmu"), (sheet.path[0], "demo")):
        res, coords, attrs = _run(tmp_path, slide, sid)
        polygons = formats.read_contours(tmp_path / f"{sid}.geojson")
        ps0 = attrs["patch_size_level0"]
        nx, ny = attrs["level0_width"] // ps0, attrs["level0_height"] // ps0
        assert np.array_equal(tile._coverage(polygons, nx, ny, ps0), _skimage_coverage(polygons, nx, ny, ps0))


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
    assert attrs["patch_size"] == 512 and attrs["target_patch_size"] == 256  # CLAM's meaning: pixels read
    assert attrs["level0_magnification"] == pytest.approx(40) and attrs["target_magnification"] == pytest.approx(40)
    # and at 1.0 mpp target, level 1 (4x downsample, 1.0 mpp) is read without resizing
    params = dict(CFG["tile"], target_mpp=1.0, min_coverage=0.01, max_ink_fraction=1.0)  # 2 tiles, both inked
    res, coords, attrs = _run(tmp_path, sheet.path[0], "fine1", params=params, sheet_mpp=0.25)
    assert attrs["patch_level"] == 1 and attrs["read_size"] == 256 and attrs["patch_size_level0"] == 1024


def _clam_region(attrs, slide):
    """CLAM's reading of a coords file (its dataset class): `patch_size` pixels read at
    `patch_level`; returned as (level, pixels read, level-0 side)."""
    level, size = int(attrs["patch_level"]), int(attrs["patch_size"])
    return level, size, size * slide.level_downsamples[level]


def _trident_region(attrs, slide):
    """TRIDENT's reading (its patcher, from its documented coords attributes): `patch_size` pixels
    at `target_magnification`, pixel size 10 / magnification, read at the best level for that
    downsample (within 10%)."""
    down = (10 / attrs["target_magnification"]) / (10 / attrs["level0_magnification"])
    side0 = round(attrs["patch_size"] * down)
    level = min(range(slide.level_count), key=lambda i: abs(slide.level_downsamples[i] - down)
                if slide.level_downsamples[i] <= down * 1.1 else np.inf)
    return level, round(side0 / slide.level_downsamples[level]), side0


@pytest.mark.parametrize("mpp,target", [(None, 0.5), (0.25, 0.5), (0.25, 1.0)])
def test_clam_and_trident_read_our_tiles(demo_cohort, tmp_path, mpp, target):
    """Our coords read by CLAM's and TRIDENT's conventions (re-implemented here from their formats)
    give our tiles: the same level-0 square, the same pixels; on a 20x scan, a 40x scan without a
    20x level (512 px read at level 0) and a 40x scan tiled at 10x (level 1 read as is)."""
    import openslide

    out, sheet = demo_cohort
    params = dict(CFG["tile"], target_mpp=target, min_coverage=0.01, max_ink_fraction=1.0)
    res, coords, attrs = _run(tmp_path, sheet.path[0], "conv", params=params, sheet_mpp=mpp)
    assert len(coords) > 0 and attrs["target_patch_size"] == 256
    slide = openslide.OpenSlide(sheet.path[0])
    ours = (int(attrs["patch_level"]), int(attrs["read_size"]), attrs["patch_size_level0"])
    assert _clam_region(attrs, slide) == ours
    assert _trident_region(attrs, slide) == ours
    # where a level has the target, TRIDENT's magnifications are the tiling's own
    if attrs["downsample"] * attrs["level0_mpp"] == pytest.approx(target, rel=0.05):
        assert attrs["target_magnification"] == pytest.approx(10 / target, rel=0.05)
    # the pixels TRIDENT reads for a tile (OpenSlide, at the level and size its attributes give) are
    # the ones our extraction reads for it (the stored JPEG tiles, assembled by our own reader)
    from ghanet_pipeline import extract

    level, size, _ = _trident_region(attrs, slide)
    some = coords[:: max(1, len(coords) // 5)][:5]
    reader = extract.TileReader(sheet.path[0], some, int(attrs["patch_level"]), int(attrs["read_size"]),
                                int(attrs["read_size"]), len(some))
    ours_px, err, _ = reader.read_batch(0)
    reader.close()
    assert err is None and reader.name.startswith("stored-tiles")
    for (x, y), got in zip(some, ours_px.numpy()):
        theirs = np.asarray(slide.read_region((int(x), int(y)), level, (size, size)))[..., :3]
        assert np.array_equal(theirs, got)
    assert formats.tile_sizes(attrs) == (ours[1], 256)


def test_min_coverage_controls_tile_count(demo_cohort, tmp_path):
    out, sheet = demo_cohort
    counts = [len(_run(tmp_path, sheet.path[0], f"c{c}", params=dict(CFG["tile"], min_coverage=c))[1])
              for c in (0.1, 0.5, 0.95)]
    assert counts[0] > counts[1] > counts[2] > 0


def test_the_qc_grid_is_drawn_on_segmentations_image_without_reading_the_slide_again(tmp_path):
    """The workflow's tile job gets segmentation's QC image: the grid goes on it (what is there,
    outlines and all, stays), and a slide is decoded once for both QC images. An image of another
    shape (a stale file, say) is not used: the slide is read as before."""
    import cv2

    res, coords, attrs = _run(tmp_path, CMU_SLIDE, "cmu")
    read = cv2.imread(str(tmp_path / "cmu.tile.png"))
    seg_qc = cv2.imread(str(tmp_path / "cmu.png"))
    assert read.shape == seg_qc.shape
    marked = np.zeros(seg_qc.shape, np.uint8)
    marked[:, :, 0] = 255  # pure blue (BGR): unlike any slide
    cv2.imwrite(str(tmp_path / "marked.png"), marked)
    drawn = {}
    for name, qc in (("marked", tmp_path / "marked.png"), ("other shape", tmp_path / "small.png")):
        cv2.imwrite(str(tmp_path / "small.png"), marked[:10, :10])
        again = tile.run(str(CMU_SLIDE), "cmu", CFG["tile"], contours=tmp_path / "cmu.geojson",
                         coords_h5=tmp_path / "again.h5", qc_png=tmp_path / f"{name}.png",
                         segment_stats=tmp_path / "cmu.json", segment_qc=qc)
        assert again["n_tiles"] == res["n_tiles"]  # the tiles do not depend on it
        drawn[name] = cv2.imread(str(tmp_path / f"{name}.png"))
    grid = (drawn["marked"] != marked).any(axis=2)
    assert 0 < grid.mean() < 0.5 and (drawn["marked"][~grid] == marked[~grid]).all()
    assert np.array_equal(drawn["other shape"], read)  # read from the slide, as without it
