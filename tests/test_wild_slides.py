"""Slides as scanners and converters write them, built from the real H&E pixels of the CMU slide:
exporter resolutions, magnifications typed as mpp, faded tissue beside well-stained tissue, marker
ink over tissue, single-level and OME-TIFF (SubIFD) pyramids read in bounded memory, DICOM folders,
valid TIFFs OpenSlide does not support, and a preflight that reports every bad slide at once."""

import json

import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile

from conftest import CMU_SLIDE, DATA, bad_input, error_line, names_item_and_fix, run_ghanet
from ghanet_pipeline import features, formats, segment, tile, wsi
from ghanet_pipeline.config import validate_config
from ghanet_pipeline.demo import write_pyramid
from ghanet_pipeline.errors import SlideError

CFG = validate_config({})
GLASS = (244, 241, 242)
DICOM_DIR = DATA / "cmu_small_region_dicom"


@pytest.fixture(scope="module")
def cmu_rgb():
    """The CMU slide's level 0: real H&E tissue on its own glass (2220 x 2967 px, 0.499 um/px)."""
    with openslide.OpenSlide(str(CMU_SLIDE)) as s:
        return wsi.rgba_to_rgb(np.asarray(s.read_region((0, 0), 0, s.dimensions)))


def faded(rgb, strength):
    """The stain at `strength` of its intensity (a faded or under-stained section)."""
    return (255 - (255 - rgb.astype(np.float64)) * strength).astype(np.uint8)


def glass(h, w, seed=0):
    noise = np.random.default_rng(seed).normal(0, 2, (h, w, 1))
    return np.clip(np.array(GLASS, np.float64) + noise, 0, 255).astype(np.uint8)


def place(canvas, piece, x, y):
    """Lay a piece (tissue on its own glass) onto the canvas: the darker pixel wins, so the piece's
    glass vanishes into the canvas's and only its tissue shows."""
    h, w = piece.shape[:2]
    canvas[y:y + h, x:x + w] = np.minimum(canvas[y:y + h, x:x + w], piece)
    return canvas


def _segment(tmp_path, slide, name, **kw):
    return segment.run(str(slide), name, kw.pop("params", CFG["segment"]), geojson=tmp_path / f"{name}.geojson",
                       qc_png=tmp_path / f"{name}.png", stats_json=tmp_path / f"{name}.json", **kw)


def _tile(tmp_path, slide, name, params=None):
    tile.run(str(slide), name, params or CFG["tile"], contours=tmp_path / f"{name}.geojson",
             coords_h5=tmp_path / f"{name}.h5", qc_png=tmp_path / f"{name}.tile.png",
             segment_stats=tmp_path / f"{name}.json")
    return formats.read_coords(tmp_path / f"{name}.h5")


# ------------------------------------------------------------------ resolution sanity


@bad_input("slide at an exporter's default resolution (72 dpi)")
def test_a_72_dpi_slide_has_no_mpp(tmp_path, cmu_rgb):
    path = tmp_path / "dpi72.tif"
    tifffile.imwrite(path, cmu_rgb, tile=(256, 256), photometric="rgb", compression="jpeg",
                     resolution=(72, 72), resolutionunit="INCH")
    with openslide.OpenSlide(str(path)) as s:
        assert float(s.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(352.78, abs=0.01)
    proc = run_ghanet("segment", "--slide", path, "--slide-id", "D72", "--geojson", tmp_path / "o.geojson",
                      "--qc", tmp_path / "o.png", "--stats", tmp_path / "o.json")
    line = names_item_and_fix(error_line(proc), "slide D72", "the slide sheet's `mpp` column")
    assert "72 dpi" in line and not (tmp_path / "o.json").exists()
    stats = _segment(tmp_path, path, "given", sheet_mpp=0.499)
    assert stats["level0_mpp"] == 0.499 and stats["mpp_source"] == "sheet" and stats["n_pieces"] >= 1


@bad_input("magnification typed as mpp")
def test_a_magnification_in_the_mpp_column_is_refused_at_once(tmp_path):
    proc = run_ghanet("segment", "--slide", CMU_SLIDE, "--slide-id", "M20", "--mpp", "20",
                      "--geojson", tmp_path / "o.geojson", "--qc", tmp_path / "o.png", "--stats", tmp_path / "o.json")
    line = names_item_and_fix(error_line(proc), "slide M20", "correct the slide sheet's `mpp` column")
    assert "a magnification? 20x is about 0.5 um/px" in line


def test_no_stage_divides_by_a_tile_that_rounds_to_nothing(tmp_path, cmu_rgb):
    # the widest plausible range and a very coarse scan: tiles are at least one pixel
    path = tmp_path / "coarse.tiff"
    write_pyramid(path, cmu_rgb[:512, :512], 9.5)
    _segment(tmp_path, path, "coarse")
    coords, attrs = _tile(tmp_path, path, "coarse", dict(CFG["tile"], on_empty="record"))
    assert attrs["patch_size_level0"] >= 1 and attrs["read_size"] >= 1


# ------------------------------------------------------------------ what is tissue


@pytest.mark.parametrize("strength", [0.5, 0.35, 0.25])
def test_faded_tissue_beside_well_stained_tissue_is_kept(tmp_path, cmu_rgb, strength):
    """One piece as scanned, the same piece faded to `strength` of its stain, a blue pen stroke
    and dust on the glass: both pieces are tissue, with about the same area; ink and dust are not."""
    canvas = glass(3200, 5000)
    place(canvas, cmu_rgb, 100, 100)
    place(canvas, faded(cmu_rgb, strength), 2650, 100)
    canvas[3050:3110, 300:2000] = (40, 60, 170)  # a pen stroke on the glass
    rng = np.random.default_rng(1)
    for x, y in rng.integers([2300, 50], [2500, 3000], (12, 2)):
        canvas[y:y + 6, x:x + 6] = (120, 110, 115)  # dust: 3 um specks
    path = tmp_path / "faded.tiff"
    write_pyramid(path, canvas, 0.499)
    _segment(tmp_path, CMU_SLIDE, "alone")
    stats = _segment(tmp_path, path, "pair")
    polys = formats.read_contours(tmp_path / "pair.geojson")
    right = [p for p in polys if p[0][:, 0].min() > 2500]
    left = [p for p in polys if p[0][:, 0].max() < 2500]
    assert stats["n_pieces"] == 2 and len(left) == len(right) == 1, stats
    area = {name: _area(p[0]) for name, p in (("left", left[0]), ("right", right[0]))}
    # the faded piece's outline is found nearly whole (a quarter of the stain loses its palest rim)
    assert 0.7 * area["left"] < area["right"] < 1.1 * area["left"]
    assert area["left"] == pytest.approx(_area(formats.read_contours(tmp_path / "alone.geojson")[0][0]), rel=0.1)
    assert stats["pen_area_mm2"] > 0 and not any(p[0][:, 1].min() > 3000 for p in polys)


def _area(ring):
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_tiles_under_marker_ink_are_dropped(tmp_path, cmu_rgb):
    """Real tissue with a black marker line drawn across it: the tiles the ink covers are dropped,
    though most of each is tissue; max_ink_fraction 1 keeps them."""
    canvas = glass(3100, 2400)
    place(canvas, cmu_rgb, 100, 60)
    canvas[1500:1560, 150:2300] = (30, 30, 35)  # a marker line across the tissue
    path = tmp_path / "inked.tiff"
    write_pyramid(path, canvas, 0.499)
    _segment(tmp_path, path, "inked")
    ink = formats.read_contours(tmp_path / "inked.geojson", "Pen")
    assert ink, "the ink is written as Pen polygons"
    kept, attrs = _tile(tmp_path, path, "inked")
    everything, _ = _tile(tmp_path, path, "inked", dict(CFG["tile"], max_ink_fraction=1.0))
    ps = attrs["patch_size_level0"]
    on_line = lambda c: (c[:, 1] < 1560) & (c[:, 1] + ps > 1500)  # noqa: E731
    assert on_line(everything).sum() > 0 and on_line(kept).sum() == 0
    assert len(kept) == len(everything) - on_line(everything).sum()


# ------------------------------------------------------------------ bounded memory, other pyramids


def test_single_level_slides_are_read_in_bands(tmp_path, cmu_rgb, monkeypatch):
    path = tmp_path / "flat.tif"  # deflate: OpenSlide decodes it (JPEG tiles are decoded small, below)
    tifffile.imwrite(path, cmu_rgb, tile=(256, 256), photometric="rgb", compression="zlib",
                     resolution=(1e4 / 0.499, 1e4 / 0.499), resolutionunit="CENTIMETER")
    with openslide.OpenSlide(str(path)) as s:
        assert s.level_count == 1
        whole = wsi.read_rgb_at(s, (139, 185), "flat", path)
        reads = []
        real = s.read_region
        monkeypatch.setattr(wsi, "BLOCK_PX", (600, 100))  # blocks of 600 x 100 px
        monkeypatch.setattr(s, "read_region", lambda *a: reads.append(a[2]) or real(*a))
        banded = wsi.read_rgb_at(s, (139, 185), "flat", path)
    assert len(reads) > 80 and max(h for _, h in reads) <= 100 and max(w for w, _ in reads) <= 600
    # bands of whole shrink factors: the image read in one band, but for rounding here and there
    diff = np.abs(banded.astype(int) - whole.astype(int))
    assert diff.mean() < 0.1 and np.percentile(diff, 99) <= 2


def test_a_single_level_slide_is_shrunk_from_its_tiles_decoded_at_reduced_scale(tmp_path, cmu_rgb, monkeypatch):
    """Shrunk 8-fold or more, a single-level JPEG-tiled slide is decoded by libjpeg-turbo at 1/8 of
    its size (DCT scaling) instead of whole by OpenSlide: its f x f block means are within a few
    grey levels of the fully decoded level's (edge tiles and all), and segmentation finds the same
    tissue as on the pyramid of the same pixels."""
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, cmu_rgb, tile=(256, 256), photometric="rgb", compression="jpeg",
                     resolution=(1e4 / 0.499, 1e4 / 0.499), resolutionunit="CENTIMETER")
    with openslide.OpenSlide(str(path)) as s:
        decoded = wsi.rgba_to_rgb(np.asarray(s.read_region((0, 0), 0, s.dimensions))).astype(np.float64)
        monkeypatch.setattr(s, "read_region", lambda *a: pytest.fail("OpenSlide decoded the level"))
        for f in (8, 24):  # 8: the DCT alone; 24: and block means of its 3 x 3 blocks (ragged at the edges)
            reduced = wsi._dct_reduced(s, path, 0, f)
            h, w = decoded.shape[:2]
            exact = np.add.reduceat(np.add.reduceat(decoded, np.arange(0, h, f), 0), np.arange(0, w, f), 1)
            exact /= np.outer(np.diff(np.append(np.arange(0, h, f), h)), np.diff(np.append(np.arange(0, w, f), w)))[..., None]
            diff = np.abs(reduced - exact)
            assert reduced.shape == exact.shape and diff.mean() < 0.5 and np.percentile(diff, 99) <= 2.5 and diff.max() <= 6
        assert wsi.read_rgb_at(s, wsi.thumbnail_size(s, 185), "flat", path).shape == (185, 138, 3)
    monkeypatch.undo()
    # segmentation at 8 um/px (16-fold) reads the same way: the same tissue as the pyramid's
    pyramid = tmp_path / "pyramid.tiff"
    write_pyramid(pyramid, cmu_rgb, 0.499)
    a, b = (_segment(tmp_path, p, name) for p, name in ((path, "flat"), (pyramid, "pyramid")))
    assert a["n_pieces"] == b["n_pieces"] and a["tissue_area_mm2"] == pytest.approx(b["tissue_area_mm2"], rel=0.02)


def test_an_ome_tiff_pyramid_in_subifds_is_used(tmp_path, cmu_rgb, monkeypatch):
    path = tmp_path / "slide.ome.tif"
    levels = [cmu_rgb, cmu_rgb[::4, ::4], cmu_rgb[::16, ::16]]
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(levels[0], subifds=2, tile=(256, 256), photometric="rgb", compression="jpeg",
                 resolution=(1e4 / 0.499, 1e4 / 0.499), resolutionunit="CENTIMETER")
        for lvl in levels[1:]:
            tw.write(lvl, subfiletype=1, tile=(256, 256), photometric="rgb", compression="jpeg")
    with openslide.OpenSlide(str(path)) as s:
        assert s.level_count == 1  # OpenSlide does not see SubIFDs
        monkeypatch.setattr(s, "read_region", lambda *a: pytest.fail("read level 0 instead of the pyramid"))
        small = wsi.read_rgb_at(s, (139, 185), "ome", path)
    assert small.shape == (185, 139, 3) and abs(float(small.mean()) - float(cmu_rgb.mean())) < 3


# ------------------------------------------------------------------ files and folders


def test_a_dicom_slide_given_as_its_folder(tmp_path):
    stats = _segment(tmp_path, DICOM_DIR, "dicom")
    with openslide.OpenSlide(str(CMU_SLIDE)) as s:
        assert stats["level0_size"] == list(s.dimensions) and stats["level0_mpp"] == pytest.approx(0.499)
    assert stats["n_pieces"] >= 1


def _kinds(tmp_path, cmu_rgb) -> dict:
    """One slide of each kind the README lists, all of the CMU slide's pixels: Aperio SVS, a generic
    tiled pyramidal TIFF, a DICOM folder, an OME-TIFF with its pyramid in SubIFDs, a single-level TIFF."""
    res = dict(resolution=(1e4 / 0.499, 1e4 / 0.499), resolutionunit="CENTIMETER")
    ome, flat = tmp_path / "slide.ome.tif", tmp_path / "flat.tif"
    with tifffile.TiffWriter(ome, ome=True) as tw:
        tw.write(cmu_rgb, subifds=1, tile=(256, 256), photometric="rgb", compression="jpeg", **res)
        tw.write(cmu_rgb[::4, ::4], subfiletype=1, tile=(256, 256), photometric="rgb", compression="jpeg")
    tifffile.imwrite(flat, cmu_rgb, tile=(256, 256), photometric="rgb", compression="jpeg", **res)
    write_pyramid(tmp_path / "pyramid.tiff", cmu_rgb, 0.499)
    return {"svs": CMU_SLIDE, "tiff": tmp_path / "pyramid.tiff", "dicom": DICOM_DIR, "ome": ome, "flat": flat}


@pytest.mark.parametrize("kind", ["svs", "tiff", "dicom", "ome", "flat"])
def test_every_stage_opens_every_kind_of_slide(tmp_path, cmu_rgb, kind):
    """Segment, tile, extract and the heatmap drawings open a slide through one function, so a
    kind one stage reads (a DICOM folder, say) is read by all of them."""
    from ghanet_pipeline import encoders, extract, heatmap

    slide = _kinds(tmp_path, cmu_rgb)[kind]
    _segment(tmp_path, slide, kind)
    coords, attrs = _tile(tmp_path, slide, kind)
    assert len(coords) > 10
    extract.run(str(slide), kind, {"encoder": "efficientnet_lite0", "weights": "random", "precision": "fp32",
                                   "channels_last": False},
                coords_h5=str(tmp_path / f"{kind}.h5"), features_h5=str(tmp_path / f"{kind}.features.h5"),
                device="cpu", reading=extract.Reading(batch_size=16, workers=1), wants_gpu=False)
    feats, got, fattrs = features.read_features(tmp_path / f"{kind}.features.h5")
    assert feats.shape == (len(coords), encoders.REGISTRY["efficientnet_lite0"].dim) and np.isfinite(feats).all()
    maps = {"morphology": np.linspace(0, 1, len(coords)) / len(coords)}
    heatmap.render(str(slide), kind, got, fattrs | features.feature_coords_attrs(tmp_path / f"{kind}.features.h5", {}),
                   maps, tmp_path / "h.png", heatmap.Settings())
    heatmap.montage(str(slide), kind, got, formats.read_coords(tmp_path / f"{kind}.h5")[1], maps, tmp_path / "t.jpg",
                    k=2)
    assert (tmp_path / "h.png").stat().st_size > 0 and (tmp_path / "t.jpg").stat().st_size > 0


@bad_input("folder that is no slide")
def test_a_folder_without_a_slide_says_which_file_to_give(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder/notes.txt").write_text("no slide here")
    with pytest.raises(SlideError) as err:
        wsi.open_slide(tmp_path / "folder", "F1")
    names_item_and_fix(str(err.value), "slide F1", "point the sheet's `path` at the slide file itself")
    (tmp_path / "folder/x.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(SlideError, match="no file in .* is a DICOM whole-slide image"):
        wsi.open_slide(tmp_path / "folder", "F1")


@bad_input("valid TIFF that OpenSlide does not support")
def test_unsupported_tiffs_are_not_called_corrupt(tmp_path, cmu_rgb):
    strips = tmp_path / "strips.tif"
    tifffile.imwrite(strips, cmu_rgb[:512, :512], photometric="rgb")
    deep = tmp_path / "float32.tif"
    tifffile.imwrite(deep, cmu_rgb[:512, :512].astype(np.float32), tile=(256, 256), photometric="rgb")
    for path, why in ((strips, "stored in strips, not tiles"), (deep, "32-bit samples")):
        with pytest.raises(SlideError) as err:
            wsi.open_slide(path, "U1")
        line = names_item_and_fix(str(err.value), "slide U1", "vips tiffsave")
        assert why in line and "corrupt" not in line


@bad_input("sheet of missing, unreadable or implausible slides")
def test_check_config_opens_every_slide_and_reports_all_at_once(tmp_path, cmu_rgb):
    nompp = tmp_path / "nompp.tiff"
    write_pyramid(nompp, cmu_rgb[:1024, :1024], None)
    notes = tmp_path / "notes.svs"
    notes.write_text("not a slide")
    (tmp_path / "empty_folder").mkdir()
    sheet = tmp_path / "slides.csv"
    pd.DataFrame({"slide_id": ["ok", "gone", "notes", "folder", "nompp", "dicom"],
                  "case_id": ["p1", "p2", "p3", "p4", "p5", "p6"],
                  "path": [CMU_SLIDE, tmp_path / "gone.svs", notes, tmp_path / "empty_folder", nompp, DICOM_DIR]}
                 ).to_csv(sheet, index=False)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"cohort:\n  slide_sheet: {sheet}\n")
    proc = run_ghanet("check-config", cfg)
    line = error_line(proc)
    assert "4 of 6 slides cannot be used" in line
    for sid in ("gone", "notes", "folder", "nompp"):
        assert f"slide {sid}:" in proc.stderr
    assert "slide ok:" not in proc.stderr and "slide dicom:" not in proc.stderr
    cfg.write_text(f"cohort:\n  slide_sheet: {sheet}\n  default_mpp: 0.5\n")
    pd.read_csv(sheet).iloc[[0, 4, 5]].to_csv(sheet, index=False)
    proc = run_ghanet("check-config", cfg)
    assert proc.returncode == 0 and "3 slides open" in proc.stdout


def test_an_internal_error_ends_with_one_line_not_a_traceback(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"slide_id": "S"}))  # stats without their fields
    formats.write_coords(tmp_path / "c.h5", np.zeros((0, 2), int), {"patch_size": 256})
    proc = run_ghanet("slide-report", "--stats", tmp_path / "s.json", "--coords", tmp_path / "c.h5",
                      "--out", tmp_path / "r.csv")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith("ghanet slide-report: error: internal error (KeyError")
    from ghanet_pipeline.failures import failure_summary

    log = tmp_path / "results/logs/slide_report.log"
    log.parent.mkdir(parents=True)
    log.write_text(proc.stderr)
    (row,) = failure_summary(tmp_path / "results")
    assert row["reason"].startswith("internal error (KeyError") and "Traceback" not in row["reason"]
