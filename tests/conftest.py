import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# a hub lookup would otherwise hang ~45 s before failing; nothing here may use the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
CMU_SLIDE = DATA / "cmu_small_region.svs"
SHARED = REPO.parent / "shared"

# small demo slides keep the tests fast; everything else is the real code path
SMALL = dict(width=2048, height=1536, mpp=0.5)


def run_ghanet(*args, check=False):
    """Run the real CLI in a subprocess; returns CompletedProcess with text output."""
    proc = subprocess.run([sys.executable, "-m", "ghanet_pipeline", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"ghanet {args[0]} failed:\n{proc.stderr}")
    return proc


def error_line(proc) -> str:
    """The single error line the CLI prints on a user error."""
    assert proc.returncode == 1, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if ": error: " in l]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory):
    from ghanet_pipeline import demo

    out = tmp_path_factory.mktemp("demo")
    sheet = demo.write_cohort(out, patients=4, seed=3, **SMALL)
    return out, sheet


@pytest.fixture
def blank_slide(tmp_path):
    """A real pyramidal TIFF of empty glass (no tissue at all)."""
    from ghanet_pipeline.demo import write_pyramid

    rng = np.random.default_rng(0)
    img = np.clip(242 + rng.normal(0, 3, (1536, 2048, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "blank.tiff"
    write_pyramid(path, img, 0.5)
    return path


def snakemake(workdir, *args, configfile=None, timeout=900):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--cores", "2", "--nocolor"]
    if configfile:
        cmd += ["--configfile", str(configfile)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)
