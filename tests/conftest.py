import os
import signal
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


def run_ghanet(*args, check=False, env=None):
    """Run the real CLI in a subprocess (`env`: variables to set); returns CompletedProcess with text output."""
    proc = subprocess.run([sys.executable, "-m", "ghanet_pipeline", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"ghanet {args[0]} failed:\n{proc.stderr}")
    return proc


def ghanet_in_process(*args):
    """The CLI's own `main` in this process, for the torch stages: the same code and messages as
    `python -m ghanet_pipeline`, without ~5 s of imports per call (the workflow tests run the
    real entry point)."""
    import contextlib
    import io

    from ghanet_pipeline import cli

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return subprocess.CompletedProcess(["ghanet", *map(str, args)], code, "", err.getvalue())


def error_line(proc) -> str:
    """The single error line the CLI prints on a user error."""
    assert proc.returncode == 1, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if ": error: " in l]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# The bad-input catalogue: kind of bad input -> the test that feeds it to the stage that meets it
# (tests/test_bad_input.py checks the catalogue is complete).
BAD_INPUTS: dict[str, str] = {}


def bad_input(*kinds):
    """Register a test as the catalogue's check of these kinds of bad input."""
    def mark(fn):
        for kind in kinds:
            assert kind not in BAD_INPUTS, f"{kind!r} is already checked by {BAD_INPUTS[kind]}"
            BAD_INPUTS[kind] = f"{fn.__module__}::{fn.__name__}"
        return fn
    return mark


def names_item_and_fix(line: str, item: str, fix: str) -> str:
    """A bad input's message: one line that names the item and says how to fix it."""
    assert "\n" not in line.strip(), line
    assert item in line, f"the message does not name {item!r}: {line}"
    assert fix in line, f"the message does not say the fix ({fix!r}): {line}"
    return line


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory):
    from ghanet_pipeline import demo

    out = tmp_path_factory.mktemp("demo")
    sheet = demo.write_cohort(out, patients=4, seed=3, **SMALL)
    return out, sheet


@pytest.fixture(scope="module")
def tiled(demo_cohort, tmp_path_factory):
    """A demo slide segmented and tiled (the extract stage's real inputs)."""
    from ghanet_pipeline import segment, tile
    from ghanet_pipeline.config import validate_config

    cfg = validate_config({})
    out, sheet = demo_cohort
    d = tmp_path_factory.mktemp("tiled")
    slide = sheet.path[0]
    segment.run(slide, sheet.slide_id[0], cfg["segment"], geojson=d / "s.geojson", qc_png=d / "s.png",
                stats_json=d / "s.json")
    tile.run(slide, sheet.slide_id[0], cfg["tile"], contours=d / "s.geojson", coords_h5=d / "c.h5",
             qc_png=d / "t.png")
    return slide, sheet.slide_id[0], d / "c.h5"


@pytest.fixture
def blank_slide(tmp_path):
    """A real pyramidal TIFF of empty glass (no tissue at all)."""
    from ghanet_pipeline.demo import write_pyramid

    rng = np.random.default_rng(0)
    img = np.clip(242 + rng.normal(0, 3, (1536, 2048, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "blank.tiff"
    write_pyramid(path, img, 0.5)
    return path


def tool_env(extra: dict | None = None) -> dict:
    """The environment jobs run in: this interpreter's scripts (ghanet) first on PATH."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **(extra or {})}


def network_cut_prefix() -> list[str]:
    """`unshare -n` where this machine allows it (root, util-linux): the command gets no network."""
    try:
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        ok = False
    return ["unshare", "-n"] if ok else []


def snakemake(workdir, *args, configfile=None, timeout=900, cores="2", env=None, prefix=()):
    cmd = [*prefix, sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--nocolor"] + (["--cores", cores] if cores else [])
    if configfile:
        cmd += ["--configfile", str(configfile)]
    proc = subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or tool_env())
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Snakemake under the SLURM plugin ignores SIGTERM; SIGINT stops it and its jobs
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        raise AssertionError(f"snakemake timed out after {timeout} s:\n{out[-3000:]}\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# 6 patients (7 slides, one patient with two) in 2 folds with 2 time bins and short training, and one
# new patient to score: the smallest demo every stage can fit (the SLURM test runs it again, job by
# job through sbatch)
TINY_DEMO = {"slides_per_job": 1,  # a job per slide, as a cohort of your own (the demo's default is 16 a job)
             "demo": {"patients": 6, "seed": 6, "width_px": 1536, "height_px": 1024, "new_patients": 1,
                      "validation_patients": 3},  # a held-out cohort of 3 (2 events): tests/test_validate.py
             "splits": {"folds": 2}, "labels": {"n_bins": 2},
             # three models, one of each kind (slides + genomic targets, slides, genomics): what the
             # workflow tests exercise; test_models runs the whole registry once
             "train": {"epochs": 2, "grad_accum": 4, "models": ["ghanet", "abmil", "snn"]},
             "evaluate": {"heatmaps": False}}  # heatmaps are drawn in test_predict; here they would cost a minute


def write_config(path, cfg) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny demo run once, end to end, locally, with the network cut where the machine allows
    (no step may reach for a hub or a download); tests only read it (or dry-run against it). Once
    per test session: under pytest-xdist the first worker that needs it makes it in the session's
    shared folder while the others wait on a lock, then every worker reads the same run."""
    import fcntl
    import shutil

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    work = shared / "tiny_run"
    with open(shared / "tiny_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (work / "network.txt").is_file():  # not made yet, or a worker's attempt failed
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            prefix = network_cut_prefix()
            proc = snakemake(work, configfile=write_config(work / "config.yaml", TINY_DEMO), prefix=prefix)
            assert proc.returncode == 0, proc.stderr[-3000:]
            (work / "network.txt").write_text("cut" if prefix else "available")
    return work


def job_counts(dry_run_output: str) -> dict:
    """The 'Job stats' table of a dry run as {rule: count} (empty when there is nothing to do)."""
    if "Job stats:" not in dry_run_output:
        return {}
    lines = dry_run_output.split("Job stats:")[-1].splitlines()
    counts = {}
    for line in lines[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts
