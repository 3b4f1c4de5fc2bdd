"""profiles/slurm for real: a single-node SLURM cluster on 127.0.0.1 runs the workflow.

The fixture writes a slurm.conf into a temporary folder, links it where srun looks,
starts munged, slurmctld and slurmd, and stops every daemon it started by the PID in its
PID file (never by name). It runs in CI (root; CI=1): there it installs Debian's SLURM
packages when missing and removes them again afterwards. Elsewhere it runs as root with
SLURM installed and skips, saying why, otherwise. One SLURM at a time on a machine:
run these tests under `flock /tmp/slurm.lock`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from workflow_helpers import copy_run, planned_jobs, snakemake_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
PROGRAMS = ["slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munged"]
MUNGE_PID = Path("/run/munge/munged.pid")
# Where srun inside a job looks: the slurm jobstep plugin drops SLURM_CONF from the job's
# environment, so the nested srun only finds the configuration at the compiled-in path.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def _ensure_slurm_installed() -> list[str]:
    """SLURM's programs present (installed in CI when missing); returns the packages this
    installed, which the fixture removes again. Skips outside CI when it cannot run."""
    if os.geteuid() != 0:
        reason = ("the SLURM tests start munged, slurmctld and slurmd, which needs root; CI runs them "
                  "as root (CI=1)")
        pytest.fail(reason) if _in_ci() else pytest.skip(reason)
    if all(shutil.which(p) for p in PROGRAMS):
        return []
    if not _in_ci() or not shutil.which("apt-get"):
        reason = (f"SLURM is not installed (Debian: {' '.join(PACKAGES)}); CI installs it, runs these "
                  "tests and removes it again (as root: CI=1 flock /tmp/slurm.lock pytest -m slurm)")
        pytest.fail(reason) if _in_ci() else pytest.skip(reason)
    missing = [p for p in PACKAGES if not _package_installed(p)]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env, capture_output=True)
    return missing


def _package_installed(name: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return out.returncode == 0 and "install ok installed" in out.stdout


def _remove_packages(names: list[str]) -> None:
    """Undo _ensure_slurm_installed: the packages it installed, their configuration and
    the dependencies only they needed."""
    if names:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "purge", "-y", "-qq", "--autoremove", *names], env=env, capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(pid_file: Path) -> None:
    """TERM the process named by ``pid_file``, KILL it if it lingers, remove the file."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def _wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    """munged + slurmctld + slurmd on 127.0.0.1, configured in ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.started: list[Path] = []  # PID files of the daemons this cluster started
        self.linked_conf = False

    def write_conf(self) -> None:
        cpus = os.cpu_count() or 1
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        state = self.root / "state"
        state.mkdir()
        shutil.chown(state, "slurm", "slurm")
        shutil.chown(self.root, "slurm", "slurm")
        self.conf.write_text(f"""\
ClusterName=vladaptertest
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=300
StateSaveLocation={state}
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/slurmctld.log
SlurmdLogFile={self.root}/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={int(mem_kb / 1024 * 0.9)}
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")

    def start(self) -> None:
        self.write_conf()
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            pytest.fail(f"{SYSTEM_CONF} exists: this test starts its own cluster and will not "
                        "replace a machine's SLURM configuration; run it on a machine without one")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self.linked_conf = True
        self._start_munge()
        subprocess.run(["slurmctld", "-c", "-f", str(self.conf)], check=True, env=self.env)
        self.started.append(self.root / "slurmctld.pid")
        subprocess.run(["slurmd", "-N", "localhost", "-f", str(self.conf)], check=True, env=self.env)
        self.started.append(self.root / "slurmd.pid")
        _wait_for(lambda: self.sinfo() == "idle", "the node to be idle")

    def _start_munge(self) -> None:
        if MUNGE_PID.exists() and _alive(int(MUNGE_PID.read_text().split()[0])):
            return  # a munged we did not start: use it, leave it running
        subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "/run/munge"], check=True)
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=True)
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
        self.started.append(MUNGE_PID)
        _wait_for(MUNGE_PID.exists, "munged's PID file")

    def sinfo(self) -> str:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--partition", "debug"], env=self.env, capture_output=True)
        for pid_file in reversed(self.started):
            _stop(pid_file)
        if self.linked_conf:
            SYSTEM_CONF.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def slurm_cluster():
    installed = _ensure_slurm_installed()
    root = Path(tempfile.mkdtemp(prefix="vladapter-slurm-"))
    root.chmod(0o755)
    cluster = Cluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        _remove_packages(installed)


def _snakemake_slurm(cluster: Cluster, workdir: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    env = snakemake_env(cluster.env)
    env.update(VLADAPTER_SLURM_PARTITION="debug", VLADAPTER_SLURM_ACCOUNT="")
    cmd = ["timeout", "-s", "INT", str(timeout), sys.executable, "-m", "snakemake",
           "--profile", "profiles/slurm", *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)


def _slurm_job_ids(output: str) -> list[str]:
    return re.findall(r"SLURM jobid (\d+)", output)


def test_smoke_workflow_through_slurm(slurm_cluster, smoke_workflow, tmp_path):
    """One training run of the session's smoke run (a copy), its evaluation and the report,
    again, each job a SLURM job."""
    workdir = copy_run(smoke_workflow[0], tmp_path / "work")
    run = "models/tiny-t5/image-single_adapter"
    assert (workdir / run).is_dir()
    planned = planned_jobs(workdir, "--forcerun", run)
    assert planned.get("train") == 1 and planned.get("evaluate") == 1, planned
    proc = _snakemake_slurm(slurm_cluster, workdir, "--forcerun", run, timeout=540)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert (workdir / "results" / "table.md").stat().st_mtime > (smoke_workflow[0] / "results" / "table.md").stat().st_mtime
    # every job but the local target `all` ran as a SLURM job: one job id per submitted
    # job, and the cluster's own log of each job is there
    submitted = re.findall(r"rule (\w+):", log)
    ids = _slurm_job_ids(log)
    assert len(ids) >= sum(planned.values()) - 1 and len(set(ids)) == len(ids), log[-3000:]
    slurm_logs = list((workdir / "logs" / "slurm").rglob("*.log"))
    assert {re.search(r"(\d+)\.log$", p.name).group(1) for p in slurm_logs} >= set(ids)
    assert "train" in submitted and "evaluate" in submitted
