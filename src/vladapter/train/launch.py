"""How a training job starts its processes: the command prefix the workflow's rules use.

    one GPU or none          vladapter train ...                       (one process)
    G GPUs on one node       torchrun --standalone --nproc_per_node=G  (DDP, local rendezvous)
    N nodes x G GPUs         srun --nodes=N --ntasks-per-node=1 torchrun --nnodes=N
                             --nproc-per-node=G --rdzv-backend=c10d
                             --rdzv-endpoint=<first node of the allocation>:<free port>

The multi-node line runs inside a SLURM allocation of N nodes (the SLURM profile asks for
one task per node): srun starts one torchrun agent per node, and the agents meet at a
c10d store on the allocation's first node, where SLURM runs the job's script, so the
port is picked free there. ``python -m vladapter.train.launch free-port`` prints that port.
"""

from __future__ import annotations

import socket
import sys

# evaluated by the job's shell on the first node of the allocation
FIRST_NODE = '"$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"'
FREE_PORT = '"$(python -m vladapter.train.launch free-port)"'


def launcher(nodes: int, gpus: int) -> str:
    """The prefix of a training command for ``nodes`` nodes with ``gpus`` GPUs each ("" = one process)."""
    if nodes > 1:
        return multinode(nodes, max(1, gpus))
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} --no-python "
    return ""


def multinode(nodes: int, procs_per_node: int) -> str:
    """srun + torchrun with a c10d rendezvous at the allocation's first node (any node count)."""
    return (f"srun --nodes={nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 "
            f"torchrun --nnodes={nodes} --nproc-per-node={procs_per_node} --rdzv-backend=c10d "
            f"--rdzv-endpoint={FIRST_NODE}:{FREE_PORT} --rdzv-id=\"$SLURM_JOB_ID\" --no-python ")


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    if sys.argv[1:] != ["free-port"]:
        sys.exit("usage: python -m vladapter.train.launch free-port")
    print(free_port())
