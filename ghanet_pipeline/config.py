"""Load and validate config.yaml and slide sheets against the schemas in workflow/schemas/.

The schema files are the single source of truth: the Snakefile and the CLI both call
`validate_config`, which types values given as text by the schema (Snakemake hands
`--config 'train={epochs: 5}'` over as strings), fills defaults and reports every schema
violation, one line each naming the key and what is allowed.

Standard library, PyYAML and jsonschema only (both are Snakemake's own dependencies): the
Snakefile imports this module in the user's Snakemake environment.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import yaml

from .errors import ConfigError, GhanetError

# libyaml's loader where PyYAML was built with it (5x faster than the pure-Python one); the same documents
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"


@functools.cache
def load_schema(name: str) -> dict:
    path = SCHEMA_DIR / f"{name}.schema.yaml"
    if not path.is_file():
        raise GhanetError(
            f"schema {path} not found: install ghanet-pipeline from its repository "
            "(pip install -e .) so the workflow/ folder sits beside the package"
        )
    return yaml.load(path.read_text(), Loader=_YAML_LOADER)


def _fill_defaults(schema: dict, instance: dict) -> None:
    """Insert schema defaults for missing keys, recursing into object-valued properties."""
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(sub, instance[key])


NULL_WORDS = {"null", "Null", "NULL", "~", "None", ""}
TRUE_WORDS, FALSE_WORDS = {"true", "yes", "on"}, {"false", "no", "off"}


def _typed(text: str, types: list[str]):
    """`text` as the first of the schema's non-string types it reads as; else unchanged."""
    if "null" in types and text.strip() in NULL_WORDS:
        return None
    word = text.strip()
    for kind in types:
        try:
            if kind == "integer" and word.lstrip("+-").isdigit():
                return int(word)
            if kind == "number":
                return float(word)
        except ValueError:
            continue
        if kind == "boolean" and word.lower() in TRUE_WORDS | FALSE_WORDS:
            return word.lower() in TRUE_WORDS
    return text


def _coerce(schema: dict, value):
    """Values given as text (Snakemake's --config) typed by the schema, recursively."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _coerce(props[k], v) if k in props else v for k, v in value.items()}
    if isinstance(value, list) and "items" in schema:
        return [_coerce(schema["items"], v) for v in value]
    if isinstance(value, str):
        types = schema.get("type", [])
        types = [types] if isinstance(types, str) else list(types)
        if (types and "string" not in types) or ("null" in types and value.strip() in NULL_WORDS):
            return _typed(value, types)
    return value


def _one_line(error, what: str) -> str:
    return f"{what}: {_message(error)}"


def _message(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "top level"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return (
            f"unknown key(s) {', '.join(map(repr, extra))} at {where}; "
            f"allowed keys: {', '.join(allowed)} (check the spelling)"
        )
    if error.validator == "required":
        return f"{where}: {error.message}"
    return f"{where}: {error.message} (see the description of '{where}' in workflow/schemas/)"


# The tile each encoder was trained on or published for, (pixels, microns per pixel). By default the
# tiling follows the configured encoder (tile.patch_size and tile.target_mpp null), so the pixels
# reach it at the scale it knows; encoders.py reads this table too. Where a resize stays, it is on purpose:
ENCODER_TILES = {
    "resnet50_trunc": (256, 0.5),  # CLAM's 256 px at 20x resized to 224: the features of the G-HANet paper
    "efficientnet_lite0": (256, 0.5),  # an ImageNet model, no pathology scale of its own: CLAM's tiling
    "uni": (256, 0.5),  # its card resizes the 20x tile to 224 (as CLAM and TRIDENT feed it)
    "uni2-h": (256, 0.5),  # as UNI
    "virchow": (224, 0.5), "virchow2": (224, 0.5),  # 224 px at 20x, as trained
    "h-optimus-0": (224, 0.5), "h-optimus-1": (224, 0.5), "h0-mini": (224, 0.5),
    "prov-gigapath": (256, 0.5),  # its card resizes to 256 and crops the centre 224: 224 px at 0.5 um/px
    "phikon-v2": (224, 0.5),
}
DEFAULT_TILE = (256, 0.5)  # timm:<name> and timm:hf-hub:<repo> encoders: CLAM's tiling


def encoder_tile(encoder: str) -> tuple[int, float]:
    """(pixels, microns per pixel) of the tile `encoder` takes at its own scale."""
    return ENCODER_TILES.get(encoder, DEFAULT_TILE)


def validate_config(config: dict | None, what: str = "config") -> dict:
    """Return a validated copy of `config` with every default filled in (the tile size and
    resolution, when not given, the configured encoder's)."""
    schema = load_schema("config")
    filled = copy.deepcopy(config or {})
    if not isinstance(filled, dict):
        raise ConfigError(f"{what}: expected a mapping of sections, got {type(filled).__name__}")
    filled = _coerce(schema, filled)
    _fill_defaults(schema, filled)
    import jsonschema  # here, not at the top: a command that reads no config never pays its import

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: [str(p) for p in e.absolute_path])
    if len(errors) == 1:
        raise ConfigError(_one_line(errors[0], what))
    if errors:
        raise ConfigError(f"{what}: {len(errors)} problems:\n" + "\n".join(f"  - {_message(e)}" for e in errors))
    px, mpp = encoder_tile(filled["extract"]["encoder"])
    tile = filled["tile"]
    tile["patch_size"] = px if tile["patch_size"] is None else tile["patch_size"]
    tile["target_mpp"] = mpp if tile["target_mpp"] is None else tile["target_mpp"]
    return filled


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing config.yaml")
    try:
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    return validate_config(raw, what=str(path))


def validate_slide_row(row: dict, where: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema("slides"))
    errors = list(validator.iter_errors(row))
    if errors:
        raise ConfigError(_one_line(errors[0], where))


def export_package_path(basedir: str) -> None:
    """Put the workflow's folder on PYTHONPATH for the jobs the workflow starts.

    Jobs run `python -m ghanet_pipeline` with the python of their environment (a rule's conda env,
    or the one Snakemake runs in) and inherit this variable; the conda envs do not install the
    package, because Snakemake copies env files elsewhere and a relative `pip: -e .` would break.
    """
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if basedir not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([basedir, *parts])
