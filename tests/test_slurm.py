"""The tiny demo through a real single-node SLURM cluster with the shipped profile (and its line for
large cohorts, several slides per job): every job goes through sbatch, and the results equal a
local run's, a job per slide, bit for bit (the determinism check: two full demo runs with one seed)."""

import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_DEMO, snakemake, tool_env, write_config
from slurm_cluster import Cluster, why_not

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_not()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
    except RuntimeError as exc:
        pytest.skip(f"the local SLURM cluster did not start: {exc}")
    yield c
    c.stop()


def _test_profile(tmp_path):
    """The shipped SLURM profile, with the sizes this 2-core node can hold and quick status checks."""
    prof = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    prof["default-resources"].update(slurm_account="ghanet_test", mem_mb=400)
    for rule, res in prof["set-resources"].items():
        res["mem_mb"] = 400
        res.pop("runtime", None)
    # the rules' own thread counts, as in the local run, so the numbers can be compared exactly
    prof.pop("set-threads")
    # the cohort- and fold-level jobs in one submission too: on this 2-core node each stage
    # boundary costs a status-check wait, and the point here is that jobs go through sbatch
    prof["groups"].update({r: "models" for r in ("splits", "genes", "feature_manifest", "train", "evaluate",
                                                  "slide_report")})
    prof["group-components"]["models"] = 5
    prof["set-resources"]["train"]["slurm_partition"] = "cpu"  # a group job takes one partition
    prof.update({"cores": 2, "slurm-init-seconds-before-status-checks": 1, "slurm-logdir": str(tmp_path / "slurm_logs"),
                 "latency-wait": 5, "retries": 0, "keep-going": False})
    # the profile's own line for large cohorts (`config: ["slides_per_job=100"]`): the slide stages as one
    # job per chunk. A stage is then one submission of seconds, where a group of per-slide jobs ran a
    # minute, and the plugin's status checks back off by 10 s after each check that finds nothing done
    prof["config"] = ["slides_per_job=100"]
    d = tmp_path / "profile"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump(prof))
    return d


def test_tiny_demo_through_slurm_matches_a_local_run(cluster, tiny_run, tmp_path):
    work = tmp_path / "run"
    work.mkdir()
    proc = snakemake(work, "--profile", _test_profile(tmp_path), "--jobs", "4", cores=None,
                     configfile=write_config(work / "config.yaml", TINY_DEMO), env=tool_env(cluster.env),
                     timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    submitted = re.findall(r"submitted with SLURM jobid (\d+)|SLURM run ID: \S+|jobid (\d+)\)", out)
    assert submitted, out[-3000:]
    # a second full run of the demo with the same seeds: the local run's results, bit for bit
    # (both on this CPU, each job with the same thread count)
    sheet = pd.read_csv(work / "results/demo/slides.csv")
    for sid in sheet.slide_id:
        with h5py.File(work / f"results/features/efficientnet_lite0/{sid}.h5") as a, \
                h5py.File(tiny_run / f"results/features/efficientnet_lite0/{sid}.h5") as b:
            np.testing.assert_array_equal(a["coords"][:], b["coords"][:])
            np.testing.assert_array_equal(a["features"][:], b["features"][:])
    for k in range(2):
        rel = f"results/genes/fold_{k}/selection.json"
        assert json.loads((work / rel).read_text()) == json.loads((tiny_run / rel).read_text())
    for model in ("ghanet", "abmil", "snn"):
        for k in range(2):
            rel = f"results/models/{model}/fold_{k}/risks.csv"
            pd.testing.assert_frame_equal(pd.read_csv(work / rel), pd.read_csv(tiny_run / rel), check_exact=True)
    rel = "results/evaluate/folds.csv"
    pd.testing.assert_frame_equal(pd.read_csv(work / rel), pd.read_csv(tiny_run / rel), check_exact=True)
