import copy

import pytest
import yaml

from conftest import REPO, bad_input, error_line, run_ghanet
from ghanet_pipeline.config import load_schema, validate_config
from ghanet_pipeline.errors import ConfigError


def test_default_config_file_is_valid_and_complete():
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    # config.yaml is the defaults spelled out, so a user sees every knob and its value
    assert validate_config(raw) == validate_config({})


def _walk(schema, path=""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}{key}", sub
        yield from _walk(sub, f"{path}{key}.")


@pytest.mark.parametrize("name", ["config", "slides"])
def test_every_schema_property_is_described(name):
    for key, sub in _walk(load_schema(name)):
        assert sub.get("description"), f"{name}: {key} has no description"


@bad_input("unknown config key")
def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key.*'tilling'.*allowed keys:.*tile.*\(check the spelling\)"):
        validate_config({"tilling": {"patch_size": 256}})
    with pytest.raises(ConfigError, match="'patchsize'.*at tile"):
        validate_config({"tile": {"patchsize": 256}})


@bad_input("wrong config type")
def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"tile\.patch_size: 'big' is not of type 'integer', 'null' \(see the description"):
        validate_config({"tile": {"patch_size": "big"}})
    with pytest.raises(ConfigError, match=r"tile\.on_empty"):
        validate_config({"tile": {"on_empty": "ignore"}})


def test_defaults_do_not_leak_between_calls():
    a = validate_config({})
    a["tile"]["patch_size"] = 1
    assert validate_config({})["tile"]["patch_size"] == 256


def test_cli_reports_config_error_in_one_line(tmp_path):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    bad = copy.deepcopy(cfg)
    bad["tilling"] = bad.pop("tile")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(bad))
    line = error_line(run_ghanet("check-config", path))
    assert "tilling" in line and str(path) in line
    bad = copy.deepcopy(cfg)
    bad["segment"]["min_tissue_area_mm2"] = "small"
    path.write_text(yaml.safe_dump(bad))
    line = error_line(run_ghanet("check-config", path))
    assert "segment.min_tissue_area_mm2" in line and "number" in line


def test_params_json_is_validated_like_the_config(demo_cohort, tmp_path):
    out, sheet = demo_cohort
    proc = run_ghanet("segment", "--slide", sheet.path[0], "--slide-id", "x", "--params",
                      '{"seg_mpp": -1}', "--geojson", tmp_path / "a.geojson", "--qc",
                      tmp_path / "a.png", "--stats", tmp_path / "a.json")
    assert "segment.seg_mpp" in error_line(proc)
    assert not list(tmp_path.iterdir())  # nothing half-written
