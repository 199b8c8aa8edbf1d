"""Patches from a slide's stored JPEG tiles (each decoded once) equal OpenSlide's read_region pixel
for pixel, so features of the two readers are identical: on the bundled real Aperio slide (RGB-coded
JPEG without a JFIF marker, where a guessing decoder gives pink tiles), a generated 40x slide in
Aperio's layout (240 px tiles, no 20x level) and a generated 20x tiled TIFF (YCbCr JPEG) at every
level; formats the fast path does not take fall back to OpenSlide, and the feature file says which
reader ran."""

import imagecodecs
import numpy as np
import openslide
import pytest
import tifffile
import torch

from conftest import CMU_SLIDE, DATA
from ghanet_pipeline import demo, encoders, extract, features
from ghanet_pipeline.stored_tiles import StoredTiles


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    out = tmp_path_factory.mktemp("stored")
    z = np.array([0.4, 0.3, 0.3])
    demo.render_slide(out / "aperio40.svs", width=2400, height=1800, mpp=0.25, z=z, seed=3, aperio=True)
    demo.render_slide(out / "tiff20.tiff", width=2048, height=1536, mpp=0.5, z=z, seed=4)
    return {"cmu": CMU_SLIDE, "aperio40": out / "aperio40.svs", "tiff20": out / "tiff20.tiff"}


def _positions(slide, level, size, n, seed):
    """Random patch corners at `level` (level-0 coordinates that map to whole level pixels)."""
    rng = np.random.default_rng(seed)
    w, h = slide.level_dimensions[level]
    d = slide.level_downsamples[level]
    for _ in range(n):
        lx, ly = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
        yield int(lx * d), int(ly * d)


@pytest.mark.parametrize("name", ["cmu", "aperio40", "tiff20"])
def test_patches_equal_openslide_pixel_for_pixel(slides, name):
    path = slides[name]
    slide = openslide.OpenSlide(str(path))
    checked = 0
    for level in range(slide.level_count):
        stored, why = StoredTiles.open(path, slide, level)
        assert stored is not None, why
        for size in (224, 256, 512):
            if min(slide.level_dimensions[level]) <= size:
                continue
            for x, y in _positions(slide, level, size, 20, seed=level * 7 + size):
                patch = stored.patch(x, y, size)
                if patch is None:  # a fractional level position: OpenSlide's to read
                    assert (x / stored.downsample) % 1 or (y / stored.downsample) % 1
                    continue
                ref = np.asarray(slide.read_region((x, y), level, (size, size)))[..., :3]
                assert np.array_equal(patch, ref), (name, level, size, x, y)
                checked += 1
        stored.close()
    assert checked >= 40


@pytest.mark.parametrize("name", ["aperio40", "tiff20"])
def test_whole_levels_for_segmentation_equal_openslides(slides, name, monkeypatch):
    """Segmentation and thumbnails read a level in blocks (`wsi.read_rgb_at`): from the stored tiles
    those blocks, and so the image shrunk from them, equal OpenSlide's pixel for pixel, at every
    level and shrink the stage takes (f 1 to 7: under 8 the DCT-scaled decode is not used)."""
    from ghanet_pipeline import stored_tiles, wsi

    path = slides[name]
    slide = openslide.OpenSlide(str(path))
    w0, h0 = slide.dimensions
    sizes = [(round(w0 / d), round(h0 / d)) for d in (1, 2, 3, 5, 7, 16)]
    monkeypatch.setattr(slide, "read_region", lambda *a: pytest.fail("OpenSlide read a JPEG-tiled level"))
    fast = [wsi.read_rgb_at(slide, size, name, path) for size in sizes]
    monkeypatch.undo()
    monkeypatch.setattr(stored_tiles.StoredTiles, "open", classmethod(lambda cls, *a: (None, "off")))
    for size, img in zip(sizes, fast):
        assert np.array_equal(img, wsi.read_rgb_at(slide, size, name, path)), size


def test_aperio_tiles_are_rgb_coded_and_a_guessing_decoder_gets_them_wrong():
    page = tifffile.TiffFile(str(CMU_SLIDE)).pages[0]
    assert int(page.photometric) == 2 and page.jpegtables is not None  # RGB, shared tables
    with open(CMU_SLIDE, "rb") as fh:
        fh.seek(page.dataoffsets[0])
        data = fh.read(page.databytecounts[0])
    assert b"JFIF" not in data[:64]
    guessed = imagecodecs.jpeg8_decode(data, tables=page.jpegtables)  # libjpeg's default: YCbCr
    ref = np.asarray(openslide.OpenSlide(str(CMU_SLIDE)).read_region((0, 0), 0, (240, 240)))[..., :3]
    assert np.abs(guessed.astype(int) - ref).max() > 100  # pink
    stored, _ = StoredTiles.open(CMU_SLIDE, openslide.OpenSlide(str(CMU_SLIDE)), 0)
    assert np.array_equal(stored.patch(0, 0, 240), ref)


def test_each_stored_tile_is_decoded_once(slides):
    """A row-major sweep of 512 px patches over the 40x slide (as our grid reads it) decodes each
    240 px stored tile it touches once, though a patch touches 9-16 of them."""
    slide = openslide.OpenSlide(str(slides["aperio40"]))
    stored, _ = StoredTiles.open(slides["aperio40"], slide, 0)
    touched = set()
    for y in range(0, 1800 - 512 + 1, 512):
        for x in range(0, 2400 - 512 + 1, 512):
            stored.patch(x, y, 512)
            touched |= {(tx, ty) for tx in range(x // 240, (x + 511) // 240 + 1)
                        for ty in range(y // 240, (y + 511) // 240 + 1)}
    assert stored.decoded == len(touched) and stored.patches == 12


@pytest.fixture(scope="module")
def net():
    spec, model, _ = encoders.load("resnet50_trunc", "random")
    return extract.Net(model.eval(), spec, torch.device("cpu"))


def _grid(slide_path, step):
    w, h = openslide.OpenSlide(str(slide_path)).dimensions
    return np.array([(x, y) for y in range(0, h - step + 1, step) for x in range(0, w - step + 1, step)])[:24]


def test_features_of_the_two_readers_are_identical(slides, net):
    coords = _grid(slides["aperio40"], 512)
    attrs = {"patch_level": 0, "read_size": 512, "target_patch_size": 256}
    fast, reader = extract.extract_tiles(net, slides["aperio40"], "a", coords, attrs, extract.Reading(8, 2))
    slow, other = extract.extract_tiles(net, slides["aperio40"], "a", coords, attrs,
                                        extract.Reading(8, 2, slide_reader="openslide"))
    assert (reader, other) == ("stored-tiles", "openslide")
    assert np.array_equal(fast, slow)  # the same pixels, so the same features


def test_other_formats_fall_back_to_openslide(tmp_path, net):
    dicom = next((DATA / "cmu_small_region_dicom").glob("*.dcm"))
    stored, why = StoredTiles.open(dicom, openslide.OpenSlide(str(dicom)), 0)
    assert stored is None and why == "dicom format is read by OpenSlide"
    # a tiled TIFF of deflate tiles: OpenSlide reads it, the JPEG path does not take it
    rgb = np.asarray(openslide.OpenSlide(str(CMU_SLIDE)).read_region((0, 0), 0, (1024, 768)))[..., :3]
    path = tmp_path / "deflate.tiff"
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="zlib", metadata=None)
    stored, why = StoredTiles.open(path, openslide.OpenSlide(str(path)), 0)
    assert stored is None and "not 8-bit RGB JPEG tiles" in why
    coords = _grid(path, 256)
    attrs = {"patch_level": 0, "read_size": 256, "target_patch_size": 224}
    feats, reader = extract.extract_tiles(net, path, "d", coords, attrs, extract.Reading(8, 1))
    assert reader == "openslide" and feats.shape == (len(coords), 1024)


def test_the_demo_run_extracts_through_the_stored_tiles(tiny_run):
    files = sorted((tiny_run / "results/features/efficientnet_lite0").glob("*.h5"))
    assert len(files) == 11  # 7 cohort slides, the new patient's, the 3 held out
    assert {features.read_features(f)[2]["reader"] for f in files} == {"stored-tiles"}


ON_DEVICES = [pytest.param("cpu", id="cpu"),
              pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(
                  not torch.cuda.is_available(), reason="no CUDA GPU here: nvJPEG is checked where a GPU is lent"))]


@pytest.mark.parametrize("read", [448, 672, 896, 512, 256])
def test_the_device_resize_is_opencvs_at_every_factor(slides, read):
    """OpenCV halves a uint8 image in integers, rounding half up ((a+b+c+d+2) >> 2), and rounds every
    other INTER_AREA factor half to even: the device resize does each as OpenCV does, on real tissue
    and on noise (ties are common at 448 -> 224: half-to-even there differed in 12.5% of values)."""
    import cv2

    from ghanet_pipeline.device_tiles import OpenCVResize

    with openslide.OpenSlide(str(slides["cmu"])) as s:
        tissue = np.asarray(s.read_region((600, 900), 0, (read, read)))[..., :3]
    noise = np.random.default_rng(read).integers(0, 256, (read, read, 3), dtype=np.uint8)
    resizer = OpenCVResize(read, 224, torch.device("cpu"))  # what DeviceTiles resizes with
    for img in (tissue, noise):
        want = cv2.resize(np.ascontiguousarray(img), (224, 224), interpolation=cv2.INTER_AREA)
        got = resizer(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
        assert np.array_equal(got, want), f"{read} -> 224: {(got != want).mean():.2%} of values differ"


@pytest.mark.parametrize("device", ON_DEVICES)
@pytest.mark.parametrize("name", ["cmu", "aperio40", "tiff20"])
def test_tiles_decoded_on_the_device_equal_the_cpu_reader(slides, name, device):
    """slide_reader device: tiles decoded by torchvision (nvJPEG on a GPU), patches assembled and
    resized there. On the CPU (libjpeg-turbo) the batches equal the CPU reader's exactly (512 and
    256 px read, 224 px out: OpenCV's INTER_AREA weights as matrices); nvJPEG's IDCT may differ
    from libjpeg-turbo's, so on a GPU within 2 grey levels. Each stored tile is decoded once; a
    patch over the slide's edge is OpenSlide's, on both paths."""
    path = slides[name]
    w, h = openslide.OpenSlide(str(path)).dimensions
    read = 256 if name == "tiff20" else 512
    coords = np.vstack([_grid(path, read), [(w - read // 2, 0)]])  # the last one runs past the edge
    cpu = extract.TileReader(path, coords, 0, read, 224, 8, "auto")
    dev = extract.TileReader(path, coords, 0, read, 224, 8, "device", torch.device(device))
    for b in range(len(cpu)):
        ref, err, _ = cpu.read_batch(b)
        out, err2, _ = dev.read_batch(b)
        assert err is None and err2 is None and out.device.type == device
        diff = (ref.int() - out.cpu().int()).abs()
        assert (diff.max() == 0) if device == "cpu" else (diff.max() <= 2 and diff.float().mean() < 0.5)
    assert dev.name == "device-tiles+openslide (1 patches)" and cpu.name == "stored-tiles+openslide (1 patches)"
    stored = dev._stored
    touched = {i for x, y in coords for i, _, _ in stored.pieces(int(x), int(y), read) or ()}
    assert dev._on_device.decoded == len(touched)


@pytest.mark.parametrize("device", ON_DEVICES)
def test_features_through_the_device_decoder_agree(slides, net, device):
    coords = _grid(slides["aperio40"], 512)
    attrs = {"patch_level": 0, "read_size": 512, "target_patch_size": 256}
    on = extract.Net(net.model.to(device), net.spec, torch.device(device))
    fast, reader = extract.extract_tiles(on, slides["aperio40"], "a", coords, attrs,
                                         extract.Reading(8, 2, slide_reader="device"))
    ref, _ = extract.extract_tiles(on, slides["aperio40"], "a", coords, attrs, extract.Reading(8, 2))
    net.model.to("cpu")
    assert reader == "device-tiles"
    if device == "cpu":
        assert np.array_equal(fast, ref)  # the same pixels, so the same features
    else:
        assert np.linalg.norm(fast - ref) / np.linalg.norm(ref) < 1e-2
