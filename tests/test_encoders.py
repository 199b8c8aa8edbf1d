"""The encoder registry, entry by entry, without the real weights: each built model's size and
width against its model card, weights found in a local Hugging Face cache laid out as the hub
publishes them (HF_HUB_OFFLINE=1), pooling on known tokens, and the preflight that says what is
missing before any job runs."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import DATA, error_line, run_ghanet
from ghanet_pipeline import encoders, extract, formats
from ghanet_pipeline.config import validate_config
from ghanet_pipeline.errors import GhanetError

HUB = [name for name, spec in encoders.REGISTRY.items() if spec.hf_repo and name != "resnet50_trunc"]
LARGE = {"uni2-h", "virchow", "virchow2", "h-optimus-0", "h-optimus-1", "prov-gigapath"}  # 0.6-1.1B


def _published(text: str) -> tuple[float, float]:
    """'1.1B' -> (1.1e9, tolerance): half a unit of the last significant digit ('300M': of the 3),
    at least 0.5% ('632M' is the nominal ViT-H size, which the SwiGLU variants match to 0.2%)."""
    number, unit = re.fullmatch(r"([\d.]+)([MB])", text).groups()
    scale = {"M": 1e6, "B": 1e9}[unit]
    if "." in number:
        step = 10.0 ** -len(number.split(".")[1])
    else:
        step = 10.0 ** (len(number) - len(number.rstrip("0")))
    value = float(number) * scale
    return value, max(0.5 * step * scale, 0.005 * value)


@pytest.mark.parametrize("name", [n for n, s in encoders.REGISTRY.items() if s.params])
def test_each_entry_is_the_published_architecture(name):
    """Built on the meta device (no memory, no time): parameters and width as the card says."""
    spec = encoders.REGISTRY[name]
    with torch.device("meta"):
        model = spec.build()
        out = model(torch.zeros(2, 3, spec.input_size, spec.input_size))
    n = sum(p.numel() for p in model.parameters())
    value, tol = _published(spec.params)
    assert abs(n - value) <= tol, f"{name}: {n / 1e6:.1f}M parameters, the card says {spec.params}"
    assert tuple(out.shape) == (2, spec.dim)
    assert spec.pooling in encoders.POOLINGS and spec.card and spec.gate
    assert len(spec.mean) == len(spec.std) == 3


PUBLISHED = json.loads((DATA / "checkpoints" / "published.json").read_text())


def test_every_entry_has_a_manifest_of_its_published_checkpoint():
    assert sorted(PUBLISHED) == sorted(encoders.REGISTRY)
    assert all(m["source"] and m["tensors"] for m in PUBLISHED.values())


@pytest.mark.parametrize("name", sorted(encoders.REGISTRY))
def test_each_entry_takes_its_published_checkpoints_tensors(name):
    """The tensors of the checkpoint as its publisher describes it (tests/data/checkpoints/published.json,
    each entry naming its source: config.json, model card, model code), against the module the loader
    loads it into, built on the meta device: every named tensor is there with its shape, and nothing
    the checkpoint does not have (register tokens) is. A round trip of our own build cannot see this."""
    manifest = PUBLISHED[name]
    spec = encoders.REGISTRY[name]
    with torch.device("meta"):
        target = encoders.checkpoint_target(spec)
    have = {k: tuple(v.shape) for k, v in target.state_dict().items()}
    if manifest["key_mapping"].startswith("positional"):  # the packaged EfficientNet-Lite0: names by order
        state = torch.load(encoders._efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
        assert {k: list(state[k].shape) for k in manifest["tensors"]} == manifest["tensors"]  # the real file
        mapped = dict(zip(state, have))
        have = {k: have[mapped[k]] for k in state}
    have = {k: have[encoders.map_key(spec, k)] for k in manifest["tensors"] if encoders.map_key(spec, k) in have} | have
    wrong = {k: (tuple(v), have.get(k)) for k, v in manifest["tensors"].items() if have.get(k) != tuple(v)}
    assert wrong == {}, f"{name}: published shape vs ours ({manifest['source']})"
    assert not [k for k in manifest["absent"] if k in have], f"{name} has tensors its checkpoint lacks"


def test_tiling_follows_the_encoder_at_its_own_scale():
    """Every entry declares the tile it was trained on; left to the encoder (tile.patch_size and
    tile.target_mpp null), the tiles are that, so the pixels reach it without a resize that changes
    their scale, except where the resize is the point (CLAM's 256 -> 224 for resnet50_trunc, the
    cards' resize for UNI, the 256 -> centre 224 of Prov-GigaPath). A size given is kept."""
    from ghanet_pipeline.config import ENCODER_TILES

    assert set(ENCODER_TILES) == set(encoders.REGISTRY)
    for name, spec in encoders.REGISTRY.items():
        tile = validate_config({"extract": {"encoder": name}})["tile"]
        assert (tile["patch_size"], tile["target_mpp"]) == ENCODER_TILES[name]
        seen = spec.resize or spec.input_size
        if name in ("virchow", "virchow2", "h-optimus-0", "h-optimus-1", "h0-mini", "phikon-v2"):
            assert tile["patch_size"] == seen == 224, name  # 224 px at 20x, as trained: no resize
        if name == "prov-gigapath":
            assert tile["patch_size"] == seen == 256 and spec.input_size == 224  # its card's centre crop
    assert validate_config({"extract": {"encoder": "virchow2"}, "tile": {"patch_size": 256}})["tile"]["patch_size"] == 256
    assert validate_config({"extract": {"encoder": "timm:resnet18"}})["tile"]["patch_size"] == 256


def test_pooling_of_known_tokens():
    # 2 images, 1 CLS + 4 registers + 3 patch tokens of width 2
    tokens = torch.arange(2 * 8 * 2, dtype=torch.float32).reshape(2, 8, 2)
    cls, patches = tokens[:, 0], tokens[:, 5:]
    assert torch.equal(encoders.pool_tokens(tokens, "cls", 5), cls)
    assert torch.equal(encoders.pool_tokens(tokens, "mean", 5), patches.mean(1))
    both = encoders.pool_tokens(tokens, "cls+mean", 5)
    assert both.shape == (2, 4) and torch.equal(both[:, :2], cls)
    assert torch.allclose(both[0, 2:], torch.tensor([12.0, 13.0]))  # tokens 5, 6, 7: (10+12+14)/3, ...
    # a registered model pools its own forward_features that way (registers excluded)
    spec = encoders.REGISTRY["h0-mini"]
    torch.manual_seed(0)
    model = spec.build().eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        t = model.net.forward_features(x)
        assert model.net.num_prefix_tokens == 5 and t.shape == (1, 261, 768)
        assert torch.equal(model(x), torch.cat([t[:, 0], t[:, 5:].mean(1)], -1))


def _write_cache(root, repo: str, files: dict) -> str:
    """A local hub cache in the standard layout: models--org--name/{refs/main, snapshots/<rev>/...}."""
    base = root / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snap.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs/main").write_text(snap.name)
    for name, write in files.items():
        write(snap / name)
    return str(snap)


def _random_weights(spec, seed: int):
    """The entry's network with random weights drawn cheaply: built on the meta device, then every
    matrix uniform with the spread of timm's init (sd 0.02), norms' scales 1 and biases 0; the
    network's own initialisation takes 14 s for a billion parameters on a CPU, this about 3."""
    with torch.device("meta"):
        model = spec.build()
    model = model.to_empty(device="cpu")
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, t in (*model.named_parameters(), *model.named_buffers()):
            if t.dim() >= 2:
                t.uniform_(-0.02 * 3 ** 0.5, 0.02 * 3 ** 0.5)
            elif t.is_floating_point():
                t.fill_(1.0 if name.endswith(("weight", "gamma")) else 0.0)
    return model


def _save_weights(model, spec, path):
    target = model.net.model if isinstance(model.net, encoders._HFTokens) else model.net
    state = {k: v.contiguous() for k, v in target.state_dict().items()}
    for published, ours in spec.key_map:  # the names the publisher's file has (Phikon-v2: transformers 4's)
        state = {k.replace(ours, published): v for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in HUB])
def test_weights_are_found_in_the_local_cache_and_loaded(name, tmp_path, monkeypatch):
    """Random weights saved where the hub puts them (its first published file, and the published
    config with a normalisation of its own) load with nothing but the encoder's name; the features
    are the saved model's, not a fresh random model's."""
    spec = encoders.REGISTRY[name]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(GhanetError, match=re.escape(f"huggingface-cli download {spec.hf_repo}")):
        encoders.load(name, None)
    saved = _random_weights(spec, 11).eval()
    x = torch.rand(2, 3, spec.input_size, spec.input_size)
    with torch.no_grad():
        want = saved(x)
    mean, std = [0.6, 0.5, 0.7], [0.2, 0.25, 0.15]
    config = ("preprocessor_config.json", {"image_mean": mean, "image_std": std}) if name == "phikon-v2" else (
        "config.json", {"architecture": "vit", "num_classes": 0, "pretrained_cfg": {"mean": mean, "std": std}})
    snap = _write_cache(tmp_path / "hub", spec.hf_repo, {
        spec.hf_files[0]: lambda p: _save_weights(saved, spec, p),
        config[0]: lambda p: p.write_text(json.dumps(config[1])),
    })
    del saved
    assert encoders.locate(spec, None).path == f"{snap}/{spec.hf_files[0]}"
    loaded_spec, model, digest = encoders.load(name, None)
    shutil.rmtree(tmp_path / "hub")  # up to 4.5 GB a model; pytest keeps its temporary folders
    with torch.no_grad():
        got = model(x)
    assert torch.allclose(got, want, atol=1e-5) and got.shape == (2, spec.dim)
    assert loaded_spec.mean == tuple(mean) and loaded_spec.std == tuple(std)  # the weights' own config
    if name not in LARGE:  # a random build gives other features (the equality above says as much)
        _, fresh, fresh_digest = encoders.load(name, "random")
        with torch.no_grad():
            assert not torch.allclose(fresh(x), want, atol=1e-3) and fresh_digest != digest


def test_a_checkpoint_loads_the_same_whichever_way_it_is_built(tmp_path):
    """Weights are assigned to a network built on the meta device (no random initialisation); one
    whose checkpoint lacks a tensor (here the classifier head, which a feature extractor may drop)
    is built for real instead, and a legacy (non-zip) torch file, which cannot be memory-mapped,
    is read whole: every way gives the network the checkpoint's weights."""
    torch.manual_seed(5)
    full = encoders._resnet50_full().eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        want = encoders.TruncatedResNet50(full)(x)
    state = full.state_dict()
    files = {"zip": state, "headless": {k: v for k, v in state.items() if not k.startswith("fc.")}}
    for name, part in files.items():
        torch.save(part, tmp_path / f"{name}.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name in (*files, "legacy"):
        _, model, _ = encoders.load("resnet50_trunc", str(tmp_path / f"{name}.pth"))
        assert not any(t.is_meta for t in model.state_dict().values()), name
        with torch.no_grad():
            assert torch.equal(model(x), want), name


@pytest.mark.slow
def test_uni2h_from_the_cache_with_nothing_but_its_name(tiled, tmp_path, monkeypatch):
    """The user's case: UNI2-h in the Hugging Face cache, `extract.encoder: uni2-h` and nothing else."""
    slide, sid, coords_h5 = tiled
    coords, attrs = formats.read_coords(coords_h5)
    few = tmp_path / "few.h5"
    formats.write_coords(few, coords[:2], attrs)  # two tiles: a ViT-H on the CPU is slow
    spec = encoders.REGISTRY["uni2-h"]
    _write_cache(tmp_path / "hub", spec.hf_repo,
                 {"pytorch_model.bin": lambda p: _save_weights(_random_weights(spec, 3), spec, p)})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    params = validate_config({"extract": {"encoder": "uni2-h"}})["extract"]
    res = extract.run(slide, sid, params, coords_h5=few, features_h5=tmp_path / "f.h5", device="cpu")
    shutil.rmtree(tmp_path / "hub")
    assert res["dim"] == 1536 and res["n_tiles"] == 2 and res["encoder"] == "uni2-h"


def test_the_cache_is_where_hugging_face_puts_it(tmp_path, monkeypatch):
    """HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub, as huggingface_hub does."""
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    spec = encoders.REGISTRY["h-optimus-0"]
    snap = _write_cache(tmp_path / "hf/hub", spec.hf_repo, {"model.safetensors": lambda p: p.write_bytes(b"x")})
    assert encoders.hub_cache_dir() == str(tmp_path / "hf/hub")
    assert encoders.locate(spec, None).path == f"{snap}/model.safetensors"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert encoders.hub_cache_dir() == str(tmp_path / "home/.cache/huggingface/hub")
    assert encoders.locate(spec, None).path is None


def test_unknown_name_suggests_the_closest():
    with pytest.raises(GhanetError, match="unknown encoder 'virchow-2'; did you mean 'virchow2'"):
        encoders.resolve("virchow-2")
    with pytest.raises(GhanetError, match="did you mean 'h-optimus-0'"):
        encoders.resolve("hoptimus-0")


def test_timm_hub_id_is_built_from_its_cached_config(tmp_path, monkeypatch):
    """`timm:hf-hub:<repo>`: architecture and arguments from the cached config.json, weights beside it."""
    import timm

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(GhanetError, match="huggingface-cli download someone/tiny-vit"):
        encoders.resolve("timm:hf-hub:someone/tiny-vit")
    cfg = {"architecture": "vit_tiny_patch16_224", "num_classes": 0, "model_args": {"img_size": 112},
           "pretrained_cfg": {"input_size": [3, 112, 112], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    torch.manual_seed(2)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=112).eval()
    from safetensors.torch import save_file

    _write_cache(tmp_path / "hub", "someone/tiny-vit", {
        "config.json": lambda p: p.write_text(json.dumps(cfg)),
        "model.safetensors": lambda p: save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(p)),
    })
    spec, model, _ = encoders.load("timm:hf-hub:someone/tiny-vit", None)
    x = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        assert spec.dim == 192 and spec.input_size == 112 and spec.mean == (0.5, 0.5, 0.5)
        assert torch.allclose(model(x), net(x), atol=1e-6)


def test_encoders_command_says_where_each_weight_is(tmp_path):
    spec = encoders.REGISTRY["virchow2"]
    snap = _write_cache(tmp_path / "hub", spec.hf_repo, {"model.safetensors": lambda p: p.write_bytes(b"x")})
    proc = run_ghanet("encoders", env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line and not line.startswith(" ")}
    assert set(encoders.REGISTRY) <= set(lines)
    assert f"found: {snap}/model.safetensors" in lines["virchow2"] and "2560" in lines["virchow2"]
    assert "not found" in lines["uni2-h"] and "huggingface-cli download MahmoodLab/UNI2-h" in lines["uni2-h"]
    assert "found: packaged" in lines["efficientnet_lite0"]


def test_check_config_locates_the_weights_before_any_job(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("extract:\n  encoder: uni2-h\n")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    proc = run_ghanet("check-config", cfg, env=env)
    line = error_line(proc)
    assert "the encoder cannot be loaded" in line
    assert "encoder uni2-h: weights not found (looked in" in proc.stderr
    assert "huggingface-cli download MahmoodLab/UNI2-h" in proc.stderr and "CUDA: " in proc.stdout
    _write_cache(tmp_path / "hub", "MahmoodLab/UNI2-h", {"pytorch_model.bin": lambda p: p.write_bytes(b"x")})
    proc = run_ghanet("check-config", cfg, env=env)
    assert proc.returncode == 0 and "encoder uni2-h: 1536-d, weights " in proc.stdout, proc.stderr
