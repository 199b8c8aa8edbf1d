"""A single-node SLURM cluster on localhost for the tests (Debian's slurm-wlm and munge).

Started as root without systemd: munged, slurmctld and slurmd run in the foreground as children of
the test, on private ports and state directories, so stopping them (by PID) touches nothing else.
Two partitions, `cpu` and `gpu`, match the placeholders of workflow/profiles/slurm; the node
advertises one fake GPU (gres/gpu on /dev/null) so GPU requests are scheduled.

The config goes to /etc/slurm/slurm.conf, SLURM's compiled-in path: the plugin's job step drops
SLURM_* variables (SLURM_CONF too) before its nested `srun`, which then finds no other config.
A machine that already has a slurm.conf is left alone (the test skips), and ours is removed on stop.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue")
CONF_DIR = Path("/etc/slurm")
MARK = "# written by ghanet-pipeline's tests/slurm_cluster.py; removed when the test cluster stops"


def why_not() -> str | None:
    """The reason a cluster cannot start here, or None."""
    missing = [d for d in DAEMONS if not shutil.which(d) and not Path(f"/usr/sbin/{d}").exists()]
    if missing:
        return f"SLURM/munge not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root"
    if not Path("/etc/munge/munge.key").exists():
        return "no munge key at /etc/munge/munge.key"
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and not conf.read_text().startswith(MARK):
        return f"{conf} exists (a real SLURM is configured here); the test cluster would replace it"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exe(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Cluster:
    def __init__(self, root: Path, cpus: int | None = None, mem_mb: int = 12000):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 2
        self.mem_mb = mem_mb
        self.procs: list[subprocess.Popen] = []
        self.conf = CONF_DIR / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join([
            MARK,
            "ClusterName=ghanettest",
            "SlurmctldHost=localhost",
            "AuthType=auth/munge",
            f"AuthInfo=socket={r / 'munge/munge.sock'}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            # without a default memory per CPU each job takes the whole node and jobs serialise
            "DefMemPerCPU=500",
            # an impossible request is refused at sbatch instead of waiting forever
            "EnforcePartLimits=ALL",
            "ReturnToService=2",
            "GresTypes=gpu",
            "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SchedulerParameters=sched_interval=1",
            f"NodeName=localhost CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:1 State=UNKNOWN",
            "PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP",
            "",
        ]))
        (CONF_DIR / "gres.conf").write_text(f"{MARK}\nNodeName=localhost Name=gpu File=/dev/null\n")

    def start(self, timeout: float = 60) -> None:
        self._write_config()
        r = self.root
        sock = r / "munge/munge.sock"
        self.procs.append(subprocess.Popen(
            [_exe("munged"), "--foreground", "--force", f"--socket={sock}", f"--pid-file={r / 'munge/munged.pid'}",
             f"--log-file={r / 'munge/munged.log'}", f"--seed-file={r / 'munge/munged.seed'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self._wait(lambda: sock.exists(), timeout, "munged did not start")
        log = open(r / "daemons.out", "ab")
        self.procs.append(subprocess.Popen([_exe("slurmctld"), "-D", "-i", "-f", str(self.conf)], env=self.env,
                                           stdout=log, stderr=log))
        self.procs.append(subprocess.Popen([_exe("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)],
                                           env=self.env, stdout=log, stderr=log))
        self._wait(lambda: self.node_state() == "idle", timeout,
                   f"the node never became idle; see {r / 'slurmctld.log'} and {r / 'slurmd.log'}")

    def node_state(self) -> str:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True)
        return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else ""

    def _wait(self, ok, timeout, message) -> None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if any(p.poll() is not None for p in self.procs):
                break
            if ok():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(message)

    def stop(self) -> None:
        """Stop only the daemons this object started, by PID."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        for name in ("slurm.conf", "gres.conf"):
            f = CONF_DIR / name
            if f.exists() and f.read_text().startswith(MARK):
                f.unlink()
