"""How a training job starts its processes: the command prefix the workflow's rules use.

    one GPU or none          vladapter train ...                       (one process)
    G GPUs on one node       python -m vladapter.train.launch torchrun --standalone
                             --nproc_per_node=G                        (DDP, local rendezvous)
    N nodes x G GPUs         srun --nodes=N --ntasks-per-node=1 --cpus-per-task=C
                             python -m vladapter.train.launch torchrun --nnodes=N
                             --nproc-per-node=G --rdzv-backend=c10d
                             --rdzv-endpoint=<first node of the allocation>:<free port>

The multi-node line runs inside a SLURM allocation of N nodes (the SLURM profile asks for
one task per node): srun starts one torchrun agent per node, and the agents meet at a
c10d store on the allocation's first node, where SLURM runs the job's script, so the
port is picked free there. ``python -m vladapter.train.launch free-port`` prints that port.
srun is given the job's CPUs per node (C) itself: since SLURM 22.05 srun no longer takes
``--cpus-per-task`` from the allocation, and each node's ranks and loader workers would
share one CPU.

torchrun reports any worker failure as exit status 1; ``launch torchrun`` is torchrun
with the status the workers exited with when they agree (75: stopped with a checkpoint,
rerun to resume; 2: bad input), also when torchrun itself got the stop signal.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

# evaluated by the job's shell on the first node of the allocation
FIRST_NODE = '"$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"'
FREE_PORT = '"$(python -m vladapter.train.launch free-port)"'
TORCHRUN = "python -m vladapter.train.launch torchrun"
# where the ranks of `launch torchrun` leave their exit status (set for them by it)
EXIT_DIR_ENV = "VLADAPTER_EXIT_DIR"


def launcher(nodes: int, gpus: int, cpus: int = 1) -> str:
    """The prefix of a training command for ``nodes`` nodes with ``gpus`` GPUs and ``cpus``
    CPUs each ("" = one process)."""
    if nodes > 1:
        return multinode(nodes, max(1, gpus), cpus)
    if gpus > 1:
        return f"{TORCHRUN} --standalone --nproc_per_node={gpus} --no-python "
    return ""


def multinode(nodes: int, procs_per_node: int, cpus_per_node: int = 1) -> str:
    """srun + torchrun with a c10d rendezvous at the allocation's first node (any node count);
    each node's torchrun, its ranks and their loader workers get ``cpus_per_node`` CPUs."""
    return (f"srun --nodes={nodes} --ntasks-per-node=1 --cpus-per-task={max(1, cpus_per_node)} --kill-on-bad-exit=1 "
            f"{TORCHRUN} --nnodes={nodes} --nproc-per-node={procs_per_node} --rdzv-backend=c10d "
            f"--rdzv-endpoint={FIRST_NODE}:{FREE_PORT} --rdzv-id=\"$SLURM_JOB_ID\" --no-python ")


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def report_exit(code: int) -> None:
    """Leave this rank's exit status for ``launch torchrun`` (nothing outside it)."""
    folder = os.environ.get(EXIT_DIR_ENV)
    if folder and Path(folder).is_dir():
        (Path(folder) / f"rank-{os.environ.get('RANK', '0')}").write_text(f"{code}\n")


def torchrun(argv: list[str]) -> int:
    """Run torchrun with ``argv`` in this process; its exit status is the one every rank that
    reported one agrees on (see :func:`report_exit`), else torchrun's own (0, or 1 on a failure).

    torchrun turns a worker's status into 1, and when it gets the stop signal itself (SLURM
    signals every process of the job step) it stops its workers and raises; the status the
    ranks left behind still tells that they checkpointed and stopped (75)."""
    from torch.distributed.run import main as torchrun_main

    with tempfile.TemporaryDirectory(prefix="vladapter-exit.") as folder:
        os.environ[EXIT_DIR_ENV] = folder
        try:
            torchrun_main(argv)
            return 0
        except Exception as e:  # noqa: BLE001 - ChildFailedError, SignalException, rendezvous errors
            codes = {int(p.read_text()) for p in Path(folder).glob("rank-*")}
            if len(codes) == 1:
                code = codes.pop()
                print(f"torchrun: the workers exited with status {code}", file=sys.stderr)
                return code
            if not codes:
                raise
            print(f"torchrun: the workers exited with statuses {sorted(codes)} ({type(e).__name__})",
                  file=sys.stderr)
            return 1


if __name__ == "__main__":
    if sys.argv[1:] == ["free-port"]:
        print(free_port())
    elif sys.argv[1:2] == ["torchrun"]:
        sys.exit(torchrun(sys.argv[2:]))
    else:
        sys.exit("usage: python -m vladapter.train.launch free-port | torchrun <torchrun arguments>")
