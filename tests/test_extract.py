import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile
import torch

from conftest import REPO, bad_input, error_line, ghanet_in_process, names_item_and_fix, run_ghanet
from ghanet_pipeline import encoders, extract, features, formats
from ghanet_pipeline.config import validate_config
from ghanet_pipeline.errors import GhanetError

CFG = validate_config({})


def _classify(model, image):
    import cv2

    h, w = image.shape[:2]
    s = min(h, w)
    crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
    x = cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    x = torch.from_numpy((x - 0.5) / 0.5).permute(2, 0, 1)[None]
    with torch.no_grad():
        return model.net(x).softmax(-1)[0].topk(3).indices.tolist()


def test_default_encoder_is_really_pretrained():
    """The packaged EfficientNet-Lite0 weights, mapped onto timm, classify real photographs."""
    import skimage.data

    spec, model, _ = encoders.load("efficientnet_lite0", None)
    assert spec.dim == 1280
    assert _classify(model, skimage.data.chelsea())[0] in range(281, 286)  # a cat
    assert _classify(model, skimage.data.coffee())[0] == 967  # espresso
    assert _classify(model, skimage.data.rocket())[0] in (657, 744)  # missile / projectile
    # and random weights do not (the test can fail)
    _, rand, _ = encoders.load("efficientnet_lite0", "random")
    assert _classify(rand, skimage.data.coffee())[0] != 967


def test_registry_declares_consistent_encoders():
    with torch.device("meta"):
        for name, spec in encoders.REGISTRY.items():
            model = spec.build()
            out = model(torch.zeros(1, 3, spec.input_size, spec.input_size, device="meta"))
            assert out.shape == (1, spec.dim), name
            assert len(spec.mean) == len(spec.std) == 3 and spec.weights_source
    spec = encoders.resolve("timm:resnet18")
    assert spec.dim == 512 and spec.input_size == 224
    with pytest.raises(GhanetError, match="unknown encoder 'resnet5'.*resnet50_trunc"):
        encoders.resolve("resnet5")


@bad_input("encoder weights of another architecture")
def test_checkpoint_loading_and_architecture_mismatch(tmp_path):
    full = encoders._resnet50_full()
    torch.save(full.state_dict(), tmp_path / "r50.pth")
    spec, model, h = encoders.load("resnet50_trunc", str(tmp_path / "r50.pth"))
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        ref = encoders.TruncatedResNet50(full.eval())(x)
        assert torch.equal(model(x), ref) and ref.shape == (2, 1024)
    torch.save(encoders._lite0().state_dict(), tmp_path / "lite.pth")
    with pytest.raises(GhanetError, match="encoder resnet50_trunc: .*lite.pth is for another architecture.*; set extract.weights to"):
        encoders.load("resnet50_trunc", str(tmp_path / "lite.pth"))
    with pytest.raises(GhanetError, match="encoder uni: weights file .*nope.bin not found; set extract.weights to a local copy of MahmoodLab/UNI"):
        encoders.load("uni", str(tmp_path / "nope.bin"))
    with pytest.raises(GhanetError, match="encoder uni: weights not found; looked in .*huggingface-cli download "
                                          "MahmoodLab/UNI.*or set extract.weights to the file"):
        encoders.load("uni", None)


def test_hub_weights_come_from_the_local_cache_only(tmp_path):
    """No cache: a clear error at once. A populated cache: the weights load, no network touched."""
    code = ("from ghanet_pipeline import encoders; import torch;"
            "s, m, h = encoders.load('resnet50_trunc', None); print(h)")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "not in the local Hugging Face cache" in proc.stderr
    from safetensors.torch import save_file

    snap = tmp_path / "hub/models--timm--resnet50.tv_in1k/snapshots/0123abcd"
    snap.mkdir(parents=True)
    (tmp_path / "hub/models--timm--resnet50.tv_in1k/refs").mkdir()
    (tmp_path / "hub/models--timm--resnet50.tv_in1k/refs/main").write_text("0123abcd")
    torch.manual_seed(5)
    full = encoders._resnet50_full()
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(snap / "model.safetensors"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == encoders.weights_hash(encoders.TruncatedResNet50(full))


def test_extract_writes_clam_readable_features(tiled, tmp_path):
    slide, sid, coords_h5 = tiled
    proc = run_ghanet("extract", "--slide", slide, "--slide-id", sid, "--coords", coords_h5,
                      "--features", tmp_path / "f.h5", "--features-pt", tmp_path / "f.pt",
                      "--batch-size", 16, "--workers", 1)
    assert proc.returncode == 0, proc.stderr
    coords, _ = formats.read_coords(coords_h5)
    with h5py.File(tmp_path / "f.h5") as f:  # what a CLAM-style reader does
        feats, c = f["features"][:], f["coords"][:]
        assert f.attrs["encoder"] == "efficientnet_lite0" and len(f.attrs["weights_sha256"]) == 64
        assert f.attrs["precision"] in ("fp32", "bf16") and f["coords"].attrs["patch_size"] == 256
    assert feats.shape == (len(coords), 1280) and feats.dtype == np.float32
    assert np.array_equal(c, coords) and np.isfinite(feats).all() and feats.std() > 0
    pt = torch.load(tmp_path / "f.pt")
    assert torch.equal(pt, torch.from_numpy(feats))
    # tiles differ, so features differ
    assert np.abs(feats[0] - feats[-1]).max() > 1e-3


@pytest.mark.parametrize("encoder, weights, max_rel_l2", [
    # ResNet-50 (CLAM's features): bf16 agrees with fp32 to well under 1e-2 (measured 4e-3)
    ("resnet50_trunc", "random", 1e-2),
    # EfficientNet-Lite0's long depthwise/ReLU6 chain amplifies bf16 rounding: measured 4-7 %
    ("efficientnet_lite0", None, 0.1),
])
def test_bf16_matches_fp32_on_the_same_tiles(tiled, encoder, weights, max_rel_l2):
    slide, sid, coords_h5 = tiled
    coords, attrs = formats.read_coords(coords_h5)
    coords = coords[:12]
    spec, model, _ = encoders.load(encoder, weights)
    model = model.to(memory_format=torch.channels_last)
    dev, cl = torch.device("cpu"), torch.channels_last
    f32, _ = extract.extract_tiles(extract.Net(model, spec, dev, None, cl), slide, sid, coords, attrs,
                                   extract.Reading(12, 0))
    bf16, _ = extract.extract_tiles(extract.Net(model, spec, dev, torch.bfloat16, cl), slide, sid, coords, attrs,
                                    extract.Reading(12, 1))
    rel = np.linalg.norm(f32 - bf16, axis=1) / np.linalg.norm(f32, axis=1)
    cos = (f32 * bf16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert rel.max() < max_rel_l2 and cos.min() > 0.995


def test_thread_and_process_readers_give_identical_features(tiled, monkeypatch):
    """Read inline, by threads taking turns with the model (a CPU's default), by threads beside it,
    or by processes: the same features, in the same order (10 patches in batches of 4, each read
    by 3 threads in runs of 2: the last run of a batch is short or empty)."""
    slide, sid, coords_h5 = tiled
    coords, attrs = formats.read_coords(coords_h5)
    spec, model, _ = encoders.load("resnet50_trunc", "random")
    dev, fmt = torch.device("cpu"), torch.contiguous_format
    args = (extract.Net(model, spec, dev, None, fmt), slide, sid, coords[:10], attrs)
    inline, reader = extract.extract_tiles(*args, extract.Reading(4, 0))
    assert reader == "stored-tiles"
    turns, real = [], extract.TileReader._lockstep
    monkeypatch.setattr(extract.TileReader, "_lockstep", lambda self, n: turns.append(n) or real(self, n))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert np.array_equal(inline, extract.extract_tiles(*args, extract.Reading(4, 2, False))[0])
    finally:
        torch.set_num_threads(threads)
    assert turns == [3]  # a model on the CPU: reading took turns with it, on as many threads as it has
    assert np.array_equal(inline, extract.extract_tiles(*args, extract.Reading(4, 2, False, lockstep=False))[0])
    assert np.array_equal(inline, extract.extract_tiles(*args, extract.Reading(4, 2, True))[0])


def test_a_card_that_resizes_then_crops_is_followed(tiled):
    """Prov-GigaPath's card resizes a tile to 256 and crops the centre 224: the encoder gets exactly
    that crop of each tile (here on the default encoder's network, given that preprocessing)."""
    from dataclasses import replace

    slide, sid, coords_h5 = tiled
    coords, attrs = formats.read_coords(coords_h5)
    spec, model, _ = encoders.load("efficientnet_lite0", "random")
    spec = replace(spec, resize=256)
    net = extract.Net(model, spec, torch.device("cpu"), None, torch.contiguous_format)
    got, _ = extract.extract_tiles(net, slide, sid, coords[:6], attrs, extract.Reading(3, 0))
    reader = extract.TileReader(slide, coords[:6], int(attrs["patch_level"]), formats.tile_sizes(attrs)[0], 256, 6)
    tiles, _, _ = reader.read_batch(0)
    reader.close()
    crop = tiles[:, 16:240, 16:240].permute(0, 3, 1, 2).float()
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        want = model((crop / 255 - mean) / std).numpy()
    assert np.allclose(got, want, atol=1e-4)
    assert encoders.REGISTRY["prov-gigapath"].resize == 256 and encoders.REGISTRY["prov-gigapath"].input_size == 224


def test_read_features_accepts_clam_trident_and_mcat_layouts(tmp_path):
    feats = np.random.default_rng(0).normal(size=(7, 16)).astype(np.float32)
    coords = np.arange(14).reshape(7, 2)
    with h5py.File(tmp_path / "trident.h5", "w") as f:
        f["features"] = feats[None]
        f["coords"] = coords[None]
    torch.save(torch.from_numpy(feats), tmp_path / "mcat.pt")
    for name in ("trident.h5", "mcat.pt"):
        got, c, _ = features.read_features(tmp_path / name)
        assert np.array_equal(got, feats)
    assert np.array_equal(features.read_features(tmp_path / "trident.h5")[1], coords)


# ---------------------------------------------------------------- bad input


def scramble_tiles(src, dst, indices, seed=0):
    """A copy of a slide with the middle third of some stored tiles' JPEG data overwritten, as a
    broken transfer leaves them: a lenient decoder gives garbage pixels without a word."""
    dst.write_bytes(open(src, "rb").read())
    with tifffile.TiffFile(dst) as tif:
        page = tif.pages[0]
        spans = [(page.dataoffsets[i], page.databytecounts[i]) for i in indices]
    rng = np.random.default_rng(seed)
    with open(dst, "r+b") as fh:
        for offset, count in spans:
            fh.seek(offset + count // 3)
            fh.write(bytes(count // 3) if seed % 2 == 0 else rng.integers(0, 256, count // 3, np.uint8).tobytes())
    return dst


@pytest.fixture(scope="module")
def cmu_tiled(tmp_path_factory):
    """The real Aperio slide segmented and tiled (256 px at level 0, over its 240 px stored tiles)."""
    from conftest import CMU_SLIDE
    from ghanet_pipeline import segment, tile

    d = tmp_path_factory.mktemp("cmu_tiled")
    cfg = validate_config({})
    segment.run(str(CMU_SLIDE), "cmu", cfg["segment"], geojson=d / "s.geojson", qc_png=d / "s.jpg", stats_json=d / "s.json")
    tile.run(str(CMU_SLIDE), "cmu", cfg["tile"], contours=d / "s.geojson", coords_h5=d / "c.h5", qc_png=d / "t.jpg")
    return CMU_SLIDE, d / "c.h5"


@bad_input("corrupt tile inside a slide")
def test_corrupt_stored_tiles_are_left_out_counted_and_located(cmu_tiled, tmp_path):
    """Three scrambled stored tiles of the real Aperio slide: the patches over them are left out
    and counted, every other patch has exactly the intact slide's features, and the feature file,
    the job's warning line and its log say how many tiles, where, and how many patches; past
    extract.max_corrupt_fraction the slide fails with that message instead."""
    slide, coords_h5 = cmu_tiled
    coords, _ = formats.read_coords(coords_h5)
    with tifffile.TiffFile(slide) as tif:
        tw = tif.pages[0].tilewidth
        across = -(-tif.pages[0].imagewidth // tw)
    under = sorted({(int(y) // tw) * across + int(x) // tw for x, y in coords[len(coords) // 3:: max(1, len(coords) // 4)]})[:3]
    bad = scramble_tiles(slide, tmp_path / "bad.svs", under)
    params = '{"precision": "fp32", "weights": "random", "max_corrupt_fraction": 0.5}'
    args = ("--coords", coords_h5, "--params", params, "--batch-size", 8, "--gpus", 0)
    ok = ghanet_in_process("extract", "--slide", slide, "--slide-id", "cmu", "--features", tmp_path / "ok.h5", *args)
    proc = ghanet_in_process("extract", "--slide", bad, "--slide-id", "cmu", "--features", tmp_path / "bad.h5", *args)
    assert ok.returncode == 0 and proc.returncode == 0, proc.stderr
    intact, all_coords, _ = features.read_features(tmp_path / "ok.h5")
    got, kept, attrs = features.read_features(tmp_path / "bad.h5")
    hit = [i for i, (x, y) in enumerate(all_coords) if any(
        x < (t % across + 1) * tw and x + 256 > (t % across) * tw and y < (t // across + 1) * tw and y + 256 > (t // across) * tw
        for t in under)]
    assert attrs["corrupt_tiles"] == 3 and attrs["dropped_patches"] == len(hit) > 0
    assert attrs["patches_planned"] == len(all_coords) and len(got) == len(all_coords) - len(hit)
    keep = [i for i in range(len(all_coords)) if i not in hit]
    assert np.array_equal(kept, all_coords[keep]) and np.array_equal(got, intact[keep])  # bit for bit
    boxes = json.loads(attrs["corrupt_at"])
    assert sorted((b[0] // tw) + (b[1] // tw) * across for b in boxes) == under
    from ghanet_pipeline import report  # results/report/slides.csv has the same per slide

    row = report.slide_table([coords_h5.parent / "s.json"], [coords_h5], [tmp_path / "bad.h5"]).iloc[0]
    assert row.dropped_patches == len(hit) and row.corrupt_tiles == 3 and json.loads(row.corrupt_at) == boxes
    line = [l for l in proc.stderr.splitlines() if ": warning: " in l]
    assert line == [f"ghanet extract: warning: slide cmu: {line[0].split('slide cmu: ')[1]}"]
    assert "3 corrupt stored tile(s)" in line[0] and f"{len(hit)} of {len(all_coords)} patches" in line[0]
    assert "Corrupt JPEG data" in line[0]
    # past the share the slide fails, saying the same and the fix
    strict = '{"precision": "fp32", "weights": "random", "max_corrupt_fraction": 0.01}'
    line = error_line(ghanet_in_process("extract", "--slide", bad, "--slide-id", "cmu", "--coords", coords_h5,
                                        "--params", strict, "--features", tmp_path / "strict.h5"))
    names_item_and_fix(line, "slide cmu: 3 corrupt stored tile(s)", "copy it again from its source")
    assert "more than extract.max_corrupt_fraction 0.01" in line and not (tmp_path / "strict.h5").exists()


def test_segmentation_and_tiling_read_around_corrupt_tiles(cmu_tiled, tmp_path):
    """OpenSlide fails a whole read over one corrupt stored tile and its handle is useless after: the
    segmentation reads around such tiles with a fresh handle, segments them as glass, says where,
    and the slide's tiles are the intact slide's but those over the damage; the run's failure summary
    lists the slide as damaged, with the stage and the reason."""
    from conftest import CMU_SLIDE
    from ghanet_pipeline.failures import failure_summary

    coords, _ = formats.read_coords(cmu_tiled[1])
    bad = scramble_tiles(CMU_SLIDE, tmp_path / "bad.svs", [33, 34, 52], seed=1)  # under tissue; random bytes
    logs = tmp_path / "results/logs"
    for stage in ("segment", "tile"):
        (logs / stage).mkdir(parents=True)
    seg = ghanet_in_process("segment", "--slide", bad, "--slide-id", "bad", "--geojson", tmp_path / "b.geojson",
                            "--qc", tmp_path / "b.jpg", "--stats", tmp_path / "b.json")
    (logs / "segment/bad.log").write_text(seg.stderr)
    assert seg.returncode == 0, seg.stderr
    stats = json.loads((tmp_path / "b.json").read_text())
    assert stats["unreadable_regions"] >= 3 and all(len(box) == 4 for box in stats["unreadable_at"])
    assert "slide bad: " in seg.stderr and "OpenSlide cannot decode, segmented as glass: level-0 x " in seg.stderr
    assert (tmp_path / "b.jpg").stat().st_size > 0
    tiled = ghanet_in_process("tile", "--slide", bad, "--slide-id", "bad", "--contours", tmp_path / "b.geojson",
                              "--segment-stats", tmp_path / "b.json", "--coords", tmp_path / "b.h5", "--qc", tmp_path / "t.jpg")
    assert tiled.returncode == 0, tiled.stderr
    got, _ = formats.read_coords(tmp_path / "b.h5")
    near = {tuple(c) for c in coords if any(x - 256 < c[0] < x + w and y - 256 < c[1] < y + h
                                            for x, y, w, h in stats["unreadable_at"])}
    assert {tuple(c) for c in got} - near <= {tuple(c) for c in coords}  # nothing new away from the damage
    assert len({tuple(c) for c in coords} - near - {tuple(c) for c in got}) <= 2  # nor much lost
    (row,) = [r for r in failure_summary(tmp_path / "results") if r["item"] == "bad"]
    assert row["stage"] == "segment" and row["status"] == "damaged" and "cannot decode" in row["reason"]


@bad_input("coords file of another slide")
def test_coords_from_another_slide(tiled, tmp_path, demo_cohort):
    slide, sid, coords_h5 = tiled
    out, sheet = demo_cohort
    other = sheet.slide_id[1]
    line = error_line(ghanet_in_process("extract", "--slide", sheet.path[1], "--slide-id", other, "--coords",
                                 coords_h5, "--features", tmp_path / "f.h5"))
    names_item_and_fix(line, f"is for slide {sid}, not {other}", f"rerun tile for {other}")
    # a CLAM coords file without ids is still checked against the slide's size
    coords, attrs = formats.read_coords(coords_h5)
    formats.write_coords(tmp_path / "clam.h5", coords * 4, {k: attrs[k] for k in ("patch_size", "patch_level", "downsample")})
    line = error_line(ghanet_in_process("extract", "--slide", slide, "--slide-id", sid, "--coords",
                                 tmp_path / "clam.h5", "--features", tmp_path / "f.h5"))
    assert "outside slide" in line
    assert not (tmp_path / "f.h5").exists()


def test_zero_tiles_give_an_empty_valid_feature_file(tiled, tmp_path):
    slide, sid, coords_h5 = tiled
    _, attrs = formats.read_coords(coords_h5)
    formats.write_coords(tmp_path / "empty.h5", np.zeros((0, 2)), attrs)
    proc = ghanet_in_process("extract", "--slide", slide, "--slide-id", sid, "--coords", tmp_path / "empty.h5",
                      "--features", tmp_path / "f.h5")
    assert proc.returncode == 0, proc.stderr
    feats, coords, fattrs = features.read_features(tmp_path / "f.h5")
    assert feats.shape == (0, 1280) and coords.shape == (0, 2) and fattrs["dim"] == 1280


@bad_input("encoder weights missing")
def test_missing_weights_file_is_one_line(tiled, tmp_path):
    slide, sid, coords_h5 = tiled
    line = error_line(ghanet_in_process("extract", "--slide", slide, "--slide-id", sid, "--coords", coords_h5,
                                 "--features", tmp_path / "f.h5", "--params",
                                 '{"encoder": "resnet50_trunc", "weights": "/models/r50.pth"}'))
    names_item_and_fix(line, "encoder resnet50_trunc: weights file /models/r50.pth not found",
                       "set extract.weights to a local copy of")
