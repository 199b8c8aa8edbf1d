"""The Snakefile where conda users run it: an environment with nothing but Snakemake (and the SLURM
executor plugin), the per-stage envs left to --use-conda. Conda cannot run here, so the jobs are not
run; the dry runs parse the whole workflow (config, sheets, every rule file) in that environment."""

import importlib.metadata
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import CMU_SLIDE, REPO, TINY_DEMO, write_config

SNAKEMAKE = f"snakemake=={importlib.metadata.version('snakemake')}"
# the plugin brings numpy and pandas along: the Snakefile must not need them, so the workflow is
# dry-run before the plugin is installed, and the SLURM profile after
SLURM_PLUGIN = f"snakemake-executor-plugin-slurm=={importlib.metadata.version('snakemake-executor-plugin-slurm')}"


# what pip says when it cannot reach a package index at all (no network, no proxy): only then is the
# test skipped; any other failure (a pin that does not exist, a conflict) fails it
UNREACHABLE = re.compile(r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
                         r"resolution|Network is unreachable|Could not fetch URL|ProxyError|ConnectTimeoutError")


def _pip_install(venv, *packages):
    proc = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", *packages], capture_output=True, text=True)
    if proc.returncode != 0 and UNREACHABLE.search(proc.stderr):
        pytest.skip(f"cannot install {' '.join(packages)} into a fresh venv: no package index reachable "
                    f"({proc.stderr.strip().splitlines()[-1:]})")
    assert proc.returncode == 0, f"pip install {' '.join(packages)} failed: {proc.stderr.strip()[-2000:]}"


def test_a_broken_pin_fails_rather_than_skips(tmp_path):
    """Only an unreachable index skips; a pin pip cannot satisfy is a failure of ours."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)  # this pip and index, without a venv to build
    with pytest.raises(AssertionError, match=r"(?s)snakemake==0.0.0.1 failed: .*No matching distribution"):
        _pip_install(venv, "--dry-run", "--target", str(tmp_path / "t"), "snakemake==0.0.0.1")


@pytest.fixture(scope="module")
def plain_env(tmp_path_factory):
    venv = tmp_path_factory.mktemp("plain") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip_install(venv, SNAKEMAKE)
    return venv


def _dry_run(venv, work, *args, configfile=None):
    cmd = [str(venv / "bin" / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(work), "-n",
           "--nocolor", "--cores", "2"]
    if configfile:
        cmd += ["--configfile", str(configfile)]
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(work), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, cwd=work)


@pytest.mark.slow
def test_dry_runs_in_a_snakemake_only_env(plain_env, tmp_path):
    for module in ("numpy", "pandas", "cv2", "openslide", "torch", "h5py"):
        proc = subprocess.run([plain_env / "bin" / "python", "-c", f"import {module}"], capture_output=True)
        assert proc.returncode != 0, f"the Snakemake-only env has {module}: the test would prove nothing"

    # the demo
    (tmp_path / "demo").mkdir()
    proc = _dry_run(plain_env, tmp_path / "demo", configfile=write_config(tmp_path / "demo/config.yaml", TINY_DEMO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "demo_cohort" in proc.stdout and "train" in proc.stdout

    # a user's cohort with genomics and new patients to score, and a typed override
    from ghanet_pipeline import demo

    user = tmp_path / "user"
    user.mkdir()
    clinical, signatures = demo.clinical_table(4, 0)
    clinical.to_csv(user / "clinical.csv", index=False)
    signatures.to_csv(user / "signatures.csv", index=False)
    pd.DataFrame({"slide_id": clinical.slide_id, "case_id": clinical.case_id, "path": str(CMU_SLIDE),
                  "mpp": 0.499}).to_csv(user / "slides.csv", index=False)
    pd.DataFrame({"slide_id": ["NEW-1"], "case_id": ["NEW"], "path": [str(CMU_SLIDE)]}).to_csv(
        user / "new.csv", index=False)
    cfg = write_config(user / "config.yaml", {
        "cohort": {"slide_sheet": "slides.csv", "clinical": "clinical.csv", "signatures": "signatures.csv"},
        "predict": {"slide_sheet": "new.csv"}, "splits": {"folds": 2}})
    proc = _dry_run(plain_env, user, "--config", "train={epochs: 3}", configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule demo_cohort" not in proc.stdout and "rule predict" in proc.stdout and "rule genes" in proc.stdout
    # several slides per job: the chunks are planned with the standard library too
    proc = _dry_run(plain_env, user, "--config", "slides_per_job=4", configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule segment_chunk" in proc.stdout and "rule extract_chunk" in proc.stdout and "rule segment:" not in proc.stdout

    # the SLURM profile: the executor plugin loads and plans every job (nothing is submitted)
    _pip_install(plain_env, SLURM_PLUGIN)
    proc = _dry_run(plain_env, user, "--profile", str(REPO / "workflow/profiles/slurm"), configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule train" in proc.stdout
