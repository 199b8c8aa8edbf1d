"""How attention maps are drawn: the overlay grid, its smoothing, the raw and percentile scales,
the overlay resolution."""

import numpy as np
import pytest

from ghanet_pipeline import heatmap


def _grid():
    """A 4 x 3 block of 100-px tiles at (0,0)..(300,200), and one lone tile far away."""
    coords = [(x, y) for y in (0, 100, 200) for x in (0, 100, 200, 300)] + [(800, 800)]
    return np.asarray(coords, float)


@pytest.mark.parametrize("smooth", [False, True])
def test_values_stay_on_the_tiles(smooth):
    coords = _grid()
    values = np.linspace(1, 2, len(coords))
    out = heatmap.tile_map(values, coords, 100, (100, 100), 0.1, smooth)
    on = np.zeros((100, 100), bool)
    for x, y in coords.astype(int) // 10:
        on[y:y + 10, x:x + 10] = True
    assert np.isnan(out[~on]).all() and not np.isnan(out[on]).any()  # never onto glass
    assert out[on].min() >= 1 - 1e-6 and out[on].max() <= 2 + 1e-6  # an average of tile values
    assert out[85, 85] == pytest.approx(2.0)  # the lone tile keeps its own value, smoothed or not
    if not smooth:
        assert out[5, 5] == pytest.approx(values[0]) and out[25, 35] == pytest.approx(values[11])


@pytest.mark.parametrize("smooth", [False, True])
def test_the_glass_of_edge_tiles_stays_clear(smooth):
    """The real CMU slide with tiles over all of it: attention is drawn on the tissue only, never on
    the glass that tiles at the tissue's edge (or a tile that reached min_coverage) also hold."""
    import openslide

    from conftest import CMU_SLIDE
    from ghanet_pipeline import wsi

    with openslide.OpenSlide(str(CMU_SLIDE)) as s:
        w0, h0 = s.dimensions
        thumb = wsi.read_rgb_at(s, (w0 // 8, h0 // 8), "cmu", CMU_SLIDE)
    tissue = heatmap.tissue_mask(thumb)
    import cv2

    bright = (thumb.astype(int).min(axis=2) > 225).astype(np.uint8)  # bright and colourless
    glass = cv2.erode(bright, np.ones((7, 7), np.uint8)).astype(bool)  # ... 3 px clear of any edge
    assert 0.1 < tissue.mean() < 0.9 and not (tissue & glass).any()
    coords = np.array([(x, y) for y in range(0, h0 - 256, 256) for x in range(0, w0 - 256, 256)], float)
    values = np.random.default_rng(0).random(len(coords))
    out = heatmap.tile_map(values, coords, 256, thumb.shape[:2], 1 / 8, smooth, tissue)
    covered = ~np.isnan(heatmap.tile_map(values, coords, 256, thumb.shape[:2], 1 / 8, smooth))
    assert np.isnan(out[glass]).all()  # the old footprint (whole tile squares) drew on this glass
    assert (covered & glass).sum() > 1000
    assert not np.isnan(out[covered & tissue]).any() and np.nanmin(out) >= 0 and np.nanmax(out) <= 1


def test_smoothing_blends_neighbours_and_keeps_a_flat_map_flat():
    coords = _grid()[:12]
    step = np.where(coords[:, 0] < 200, 0.0, 1.0)  # left half 0, right half 1
    blocky = heatmap.tile_map(step, coords, 100, (30, 40), 0.1, smooth=False)
    smooth = heatmap.tile_map(step, coords, 100, (30, 40), 0.1, smooth=True)
    assert set(np.unique(blocky)) == {0.0, 1.0}
    assert 0.2 < smooth[15, 19] < 0.8 and 0.2 < smooth[15, 20] < 0.8  # the edge is a ramp
    assert smooth[15, 0] < 0.05 and smooth[15, 39] > 0.95
    flat = heatmap.tile_map(np.full(12, 0.7), coords, 100, (30, 40), 0.1, smooth=True)
    assert np.allclose(flat, 0.7)


def test_raw_scale_shows_a_flat_map_flat_and_percentiles_do_not():
    settings = heatmap.Settings(scale="raw")
    flat = np.full(100, 0.01) + np.linspace(-1e-4, 1e-4, 100)  # attention sums to 1 over 100 tiles
    focal = np.r_[np.full(99, 0.1 / 99), 0.9]
    shown_flat, label, top = heatmap._shown(flat, 100, settings)
    assert np.allclose(shown_flat, 1.0, atol=0.02) and top == pytest.approx(1.01) and label == "attention / uniform"
    shown_focal, _, top = heatmap._shown(focal, 100, settings)
    assert top == pytest.approx(90.0) and np.sum(shown_focal > 0.5 * top) == 1
    pct = heatmap.Settings(scale="percentile")
    shown_flat, label, top = heatmap._shown(flat, 100, pct)
    assert top == 1.0 and shown_flat.min() == 0 and shown_flat.max() == 1  # rank spreads a flat map
    assert "percentile" in label


def test_overlay_resolution_is_the_one_asked_unless_the_slide_is_too_large():
    s = heatmap.Settings(mpp=4.0, max_side_px=2048)
    assert heatmap.overlay_mpp((4096, 3072), 0.5, s) == 4.0  # 512 px wide
    assert heatmap.overlay_mpp((100_000, 80_000), 0.25, s) == pytest.approx(25_000 / 2048)
    assert heatmap.overlay_mpp((1000, 1000), 8.0, s) == 8.0  # never finer than the slide
    assert heatmap.overlay_mpp((1000, 1000), None, s) is None


def test_contact_sheets_page_every_image_into_a_few_files(tmp_path):
    """The report's galleries: 50 slides' image pairs on 3 pages of 24, each image fitted into its
    place (aspect kept), a missing image left blank instead of failing the page."""
    import cv2

    from ghanet_pipeline import formats
    from ghanet_pipeline.gallery import contact_sheets

    red = np.zeros((300, 600, 3), np.uint8)
    red[..., 0] = 255
    formats.write_image(tmp_path / "wide.png", red)
    items = [(f"S{i:02d}", [tmp_path / "wide.png", tmp_path / ("gone.png" if i == 3 else "wide.png")])
             for i in range(50)]
    pages = contact_sheets(items, tmp_path / "out", name="slides", image_px=(200, 200), columns=3, per_page=24)
    assert [p.name for p in pages] == ["slides_001.jpg", "slides_002.jpg", "slides_003.jpg"]
    first = cv2.cvtColor(cv2.imread(str(pages[0])), cv2.COLOR_BGR2RGB).astype(int)
    # three cells of two 200 px images a row, 8 px apart; a 2:1 image fitted into 200 x 200 is
    # 200 x 100, so each row is a 22 px label and 100 px of image: 8 rows of 24 items
    assert first.shape[:2] == (8 * (22 + 100) + 9 * 8, 3 * (404 + 8) + 8)
    top = 8 + 22
    assert first[top + 50, 8 + 100, 0] > 200 and first[top + 50, 8 + 100, 1] < 60  # red
    # slide S03 (row 2, column 1) has its second image missing: its place is blank
    x, y = 8 + 204, 8 + 122 + 8 + 22
    assert first[y + 50, x + 100].min() > 240 and first[y + 50, 8 + 100, 0] > 200
    last = cv2.imread(str(pages[2]))
    assert last.shape[0] < first.shape[0]  # 2 items on the last page: one row
