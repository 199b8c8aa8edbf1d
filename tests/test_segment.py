import json
import sys

import cv2
import numpy as np
import pytest

from conftest import CMU_SLIDE, REPO, SMALL
from ghanet_pipeline import demo, formats, segment
from ghanet_pipeline.config import validate_config

sys.path.insert(0, str(REPO / "benchmarks"))
from clam_baseline import clam_segment  # noqa: E402  (CLAM's default algorithm, our baseline)

PARAMS = validate_config({})["segment"]


def _segment(tmp_path, slide, sid="s", params=PARAMS, **kw):
    out = {k: tmp_path / f"{sid}.{k}" for k in ("geojson", "png", "json")}
    stats = segment.run(str(slide), sid, params, geojson=out["geojson"], qc_png=out["png"],
                        stats_json=out["json"], **kw)
    return stats, formats.read_contours(out["geojson"]), out


def _rasterise(polygons, shape, scale):
    mask = np.zeros(shape, np.uint8)
    for rings in polygons:
        cv2.fillPoly(mask, [np.round(rings[0] * scale).astype(np.int32)], 1)
        for hole in rings[1:]:
            cv2.fillPoly(mask, [np.round(hole * scale).astype(np.int32)], 0)
    return mask.astype(bool)


@pytest.mark.parametrize("slide_index", [0, 1, 2])
def test_segmentation_matches_planted_truth(demo_cohort, tmp_path, slide_index):
    out, sheet = demo_cohort
    row = sheet.iloc[slide_index]
    z = demo._latents(4, 3)[int(row.case_id.split("-")[1])]
    _, m, layout = demo.slide_layout(demo.slide_seed(3, slide_index), SMALL["width"], SMALL["height"],
                                     SMALL["mpp"], z)
    truth = demo.truth_masks(layout, m, SMALL["mpp"])
    stats, polys, files = _segment(tmp_path, row.path)
    ours = _rasterise(polys, truth["tissue"].shape, 1 / m)

    # ink over tissue is rightly excluded, so score outside the ink
    visible = truth["tissue"] & ~truth["pen"]
    iou = (ours & visible).sum() / (ours | visible).sum()
    assert iou > 0.85, iou
    # pen ink is not tissue
    assert (ours & truth["pen"] & ~truth["tissue"]).sum() < 0.02 * truth["pen"].sum()
    # lumina stay holes
    inner_holes = truth["holes"] & cv2.erode(truth["holes"].astype(np.uint8), np.ones((5, 5))).astype(bool)
    assert (~ours[inner_holes]).mean() > 0.9
    # every planted piece is found, the small one included, and no dust speck is a piece
    _, _, cc, _ = cv2.connectedComponentsWithStats(visible.astype(np.uint8))
    min_px = PARAMS["min_tissue_area_mm2"] / (m * SMALL["mpp"] / 1000) ** 2
    assert stats["n_pieces"] == (cc[1:, cv2.CC_STAT_AREA] >= min_px).sum()
    assert stats["pen_area_mm2"] > 0
    doc = json.loads(files["geojson"].read_text())
    assert doc["type"] == "FeatureCollection"
    assert doc["features"][0]["properties"]["classification"]["name"] == "Tissue"


def test_better_than_clam_defaults_on_pen_small_pieces_and_holes(demo_cohort, tmp_path):
    out, sheet = demo_cohort
    z = demo._latents(4, 3)[int(sheet.case_id.iloc[0].split("-")[1])]
    _, m, layout = demo.slide_layout(demo.slide_seed(3, 0), SMALL["width"], SMALL["height"], SMALL["mpp"], z)
    truth = demo.truth_masks(layout, m, SMALL["mpp"])
    _, polys, _ = _segment(tmp_path, sheet.path[0])
    ours = _rasterise(polys, truth["tissue"].shape, 1 / m)
    clam = _rasterise(clam_segment(sheet.path[0]), truth["tissue"].shape, 1 / m)
    pen_only = truth["pen"] & ~truth["tissue"]
    assert (clam & pen_only).mean() >= (ours & pen_only).mean()

    def iou(a):
        return (a & truth["tissue"]).sum() / max(1, (a | truth["tissue"]).sum())

    assert iou(ours) > iou(clam)


def test_real_cmu_slide(tmp_path):
    stats, polys, files = _segment(tmp_path, CMU_SLIDE, "cmu")
    assert stats["level0_mpp"] == pytest.approx(0.499)
    # one main tissue piece of about half a square millimetre, no pen on this slide
    assert 1 <= stats["n_pieces"] <= 3
    assert 0.3 < stats["tissue_area_mm2"] < 0.9
    assert stats["pen_area_mm2"] == 0
    # purple (haematoxylin-dense) tissue is not mistaken for black ink
    no_pen = dict(PARAMS, remove_pen=False)
    stats2, *_ = _segment(tmp_path, CMU_SLIDE, "cmu2", params=no_pen)
    assert stats2["tissue_area_mm2"] == pytest.approx(stats["tissue_area_mm2"], rel=0.02)
    assert files["png"].read_bytes()[:4] == b"\x89PNG"
    xs = np.concatenate([p[0][:, 0] for p in polys])
    ys = np.concatenate([p[0][:, 1] for p in polys])
    assert xs.min() >= 0 and xs.max() <= 2220 and ys.min() >= 0 and ys.max() <= 2967


def test_level_is_chosen_by_physical_size(demo_cohort, tmp_path):
    out, sheet = demo_cohort
    stats, *_ = _segment(tmp_path, sheet.path[0], params=dict(PARAMS, seg_mpp=2.0))
    assert stats["seg_level"] == 1 and stats["seg_mpp"] == pytest.approx(2.0)
    # a sheet mpp of 0.25 makes the same file twice as fine: 2 um/px is now level 2 (1.0 -> 4.0)
    stats, *_ = _segment(tmp_path, sheet.path[0], params=dict(PARAMS, seg_mpp=2.0), sheet_mpp=0.25)
    assert stats["seg_level"] == 1 and stats["seg_mpp"] == pytest.approx(2.0)
    stats, *_ = _segment(tmp_path, sheet.path[0], params=dict(PARAMS, seg_mpp=4.0), sheet_mpp=0.25)
    assert stats["seg_level"] == 2


def test_tracing_in_the_tissue_box_gives_the_whole_images_contours():
    """Contours are traced on the 4x upsampled box around what is set (`segment._trace`): the same
    contours, hierarchy and order as tracing the whole upsampled image, on random masks with glass
    margins, pieces on the image border, and holes."""
    rng = np.random.default_rng(0)
    for t in range(200):
        h, w = (int(v) for v in rng.integers(5, 90, 2))
        mask = cv2.medianBlur((rng.random((h, w)) < rng.uniform(0.2, 0.8)).astype(np.uint8) * 255, 3) // 255
        mask[: int(rng.integers(0, h))] *= t % 3 != 0  # a glass margin above, on two in three
        mask[:, int(rng.integers(0, w)):] *= t % 5 != 0
        for mode in (cv2.RETR_CCOMP, cv2.RETR_EXTERNAL):
            up = cv2.resize(mask, None, fx=segment.TRACE_UPSAMPLE, fy=segment.TRACE_UPSAMPLE,
                            interpolation=cv2.INTER_NEAREST)
            want, want_h = cv2.findContours(up, mode, cv2.CHAIN_APPROX_SIMPLE)
            got, got_h = segment._trace(mask, mode)
            assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))
            assert (got_h is None and want_h is None) or np.array_equal(got_h, want_h)


def test_glass_bound_is_the_mode_plus_its_median_absolute_deviation():
    """glass_bound takes the median deviation from the histogram: the same value as the median of
    the pixels within 8 of the mode, on even and odd counts, narrow and wide glass peaks."""
    rng = np.random.default_rng(1)
    for t in range(500):
        n = int(rng.integers(1, 400))
        sat = np.clip(rng.normal(rng.uniform(0, 45), rng.uniform(0.1, 6), n), 0, 255).round() if t % 2 else \
            rng.integers(0, 256, n)
        sat = sat.astype(np.uint8)
        mode = int(np.argmax(np.bincount(sat, minlength=256)[:segment.GLASS_SEARCH]))
        near = sat[(sat >= max(0, mode - 8)) & (sat <= mode + 8)].astype(np.float64)
        spread = 1.4826 * float(np.median(np.abs(near - mode)))
        assert segment.glass_bound(sat) == max(mode + max(segment.GLASS_MARGIN, 6 * spread), segment.FAINT_FLOOR)
