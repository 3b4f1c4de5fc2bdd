"""Measurement helpers shared by the benchmark scripts.

Every number that is compared is measured the same way:
- time: `time_call` runs warm-up calls, then `repeats` timed calls, and reports the
  median (noise on a shared machine is one-sided: the median resists it, the min hides it);
- peak CPU memory: each measurement runs in a fresh child process (`run_child`), whose
  peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is then its own, not the
  parent's or an earlier measurement's; on CUDA, `torch.cuda.max_memory_allocated`;
- peak tensor memory on CPU: `LiveTensors` counts the bytes of every live tensor storage
  (those that exist before, named by the caller, and every one an operator allocates until
  it is freed): what `max_memory_allocated` counts on a GPU, without the process's runtime;
- optimiser state: the bytes of the tensors in `optimizer.state` (`optimizer_state_bytes`).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

RESULT_PREFIX = "BENCHMARK-RESULT "  # marks the child's one JSON line among its other output
REPO = Path(__file__).resolve().parents[1]


def time_call(fn: Callable[[], Any], warmup: int = 1, repeats: int = 3,
              sync: Callable[[], None] | None = None) -> dict:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns ``{"median_s", "min_s", "times_s"}``. ``sync`` (e.g. ``torch.cuda.synchronize``)
    is called before each clock read so asynchronous devices are timed to completion.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def live_tensors(**kwargs):
    """A new `_LiveTensors` (the class is built on first use: it needs torch, this module does not)."""
    return _live_tensors_class()(**kwargs)


@functools.cache
def _live_tensors_class():
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_map_only
    from torch.utils.weak import WeakIdKeyDictionary

    class _LiveTensors(TorchDispatchMode):
        """The peak of live tensor bytes while it is active, and what held them at the peak.

        ``track(part, tensors)`` counts tensors that already exist (weights, optimiser
        state, the batch) under ``part``; inside ``with``, every storage an operator creates
        is counted under the current ``phase`` until it is freed (a weak reference's
        callback). Views and in-place results share a counted storage and add nothing.
        """

        def __init__(self, phase: str = "ops"):
            super().__init__()
            self.phase = phase
            self._storages = WeakIdKeyDictionary()  # storage -> the weak reference that uncounts it
            self.parts: dict[str, int] = {}
            self.current = self.peak = 0
            self.at_peak: dict[str, int] = {}

        def track(self, part: str, tensors) -> None:
            for t in tensors:
                self._count(part, t)

        def _count(self, part: str, t: torch.Tensor) -> None:
            if t.device.type == "meta":
                return
            st = t.untyped_storage()
            if st in self._storages:
                return
            size = st.nbytes()
            self._storages[st] = weakref.ref(st, lambda _, part=part, size=size: self._add(part, -size))
            self._add(part, size)

        def _add(self, part: str, size: int) -> None:
            self.parts[part] = self.parts.get(part, 0) + size
            self.current += size
            if self.current > self.peak:
                self.peak, self.at_peak = self.current, dict(self.parts)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tree_map_only(torch.Tensor, lambda t: self._count(self.phase, t), out)
            return out

    return _LiveTensors


def optimizer_state_bytes(optimizer) -> int:
    """Bytes held by the tensors in ``optimizer.state`` (moments, step counters)."""
    import torch

    return sum(v.numel() * v.element_size()
               for state in optimizer.state.values()
               for v in state.values() if isinstance(v, torch.Tensor))


def emit_result(result: dict) -> None:
    """Print the child's result as one marked JSON line for `run_child` to pick up."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(argv: Sequence[str], python: str | os.PathLike = sys.executable,
              env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``python argv...`` in a fresh process and return the JSON it emitted.

    A fresh process per measurement makes its peak RSS its own. The child's stderr is
    passed through (progress, warnings); a failing child raises RuntimeError with its
    last output so the cause is visible.
    """
    proc = subprocess.run([str(python), *map(str, argv)], stdout=subprocess.PIPE, stderr=None,
                          text=True, env=env, timeout=timeout, cwd=REPO)
    lines = proc.stdout.splitlines()
    results = [l[len(RESULT_PREFIX):] for l in lines if l.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not results:
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"benchmark child {' '.join(map(str, argv))} failed "
                           f"(exit {proc.returncode}):\n{tail}")
    return json.loads(results[-1])


def machine_description() -> dict:
    """What the numbers were measured on: CPU model, cores, memory, library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gib = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    desc = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        desc["gpu"] = torch.cuda.get_device_name()
    try:
        import transformers

        desc["transformers"] = transformers.__version__
    except ImportError:
        pass
    return desc


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are printed with 3 significant decimals."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def mib(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else n_bytes / 2**20


def check(ok: bool) -> str:
    """Target column marker: the table says plainly whether a target is met."""
    return "yes" if ok else "**no**"


# --- lockstep: two implementations timed in turns -------------------------------------------
# On a shared machine the load changes from minute to minute, so two implementations
# measured one after the other see different machines. In lockstep both child processes
# are alive at once and take turns, one timed step each (A B, B A, A B ...): each pair
# of steps sees the same load, and the median of the per-pair ratios cancels its drift.

READY, STEP = "LOCKSTEP-READY", "LOCKSTEP-STEP "


def serve_steps(step: Callable[[], Any], sync: Callable[[], None] | None = None) -> list[float]:
    """Child side: announce READY, then time one ``step()`` per "step" line on stdin until
    "done"; returns the step times."""
    sync = sync or (lambda: None)
    print(READY, flush=True)
    times = []
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        print(f"{STEP}{times[-1]}", flush=True)
    return times


class LockstepChild:
    """Parent side of `serve_steps`: a child process that steps on request."""

    def __init__(self, argv: Sequence[str], python: str | os.PathLike = sys.executable):
        self.argv = [str(python), *map(str, argv)]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=REPO, bufsize=1)
        self.output: list[str] = []
        self._expect(READY)

    def _expect(self, marker: str) -> str:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            if line.startswith(marker):
                return line[len(marker):]
        self.proc.wait()
        tail = "\n".join(self.output[-20:])
        raise RuntimeError(f"benchmark child {' '.join(self.argv[1:])} failed (exit {self.proc.returncode}):\n{tail}")

    def step(self) -> float:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        return float(self._expect(STEP))

    def finish(self) -> dict:
        """End the stepping; the child's emitted result."""
        self.proc.stdin.write("done\n")
        self.proc.stdin.close()
        result = json.loads(self._expect(RESULT_PREFIX))
        self.proc.wait()
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def lockstep(a: LockstepChild, b: LockstepChild, pairs: int, progress=None) -> list[tuple[float, float]]:
    """``pairs`` pairs of (a's step time, b's step time), alternating who goes first."""
    out = []
    for i in range(pairs):
        if i % 2 == 0:
            ta = a.step()
            tb = b.step()
        else:
            tb = b.step()
            ta = a.step()
        out.append((ta, tb))
        if progress is not None:
            progress.update(1)
    return out
