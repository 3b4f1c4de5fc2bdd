"""One CPU arithmetic on every x86-64 host: the instruction-set level and thread count that
torch, MKL, oneDNN, numpy and OpenBLAS compute with, fixed before they load.

Each of those libraries picks its kernels for the CPU it finds (AVX-512 here, AVX2 there)
and splits work by thread count; the kernels sum in different orders, and training turns
last-bit differences into different scores. Pinned, every process computes alike:

- ATen (torch's own kernels): ``ATEN_CPU_CAPABILITY=avx2``
- MKL (torch's matrix products): conditional numerical reproducibility, ``MKL_CBWR``
  (AVX2's branch; fixed cache sizes, deterministic reductions, static scheduling)
- oneDNN (torch's convolutions, some element-wise ops): ``ONEDNN_MAX_CPU_ISA=AVX2``
- numpy's own SIMD loops (``NPY_DISABLE_CPU_FEATURES`` of the AVX-512 groups) and its
  OpenBLAS (scikit-learn's probe): ``OPENBLAS_CORETYPE=Haswell``
- one intra-op thread in every process (OpenMP, MKL, OpenBLAS; torch.set_num_threads)

Levels (config ``cpu_arithmetic``; a job reads it from ``VLADAPTER_CPU_ARITHMETIC``):

``avx2``        the default. MKL honours its AVX2 branch on Intel CPUs only; on other
                vendors' CPUs it falls back to its own dispatch (MKL's documentation), so
                an Intel and an AMD host may still differ in MKL's products.
``compatible``  as ``avx2`` but MKL's COMPATIBLE branch (SSE2, the one MKL keeps identical
                across Intel and other vendors); training steps cost ~1.6x the
                CPU time (docs/workflow.md: CPU arithmetic, measured).
``native``      nothing pinned: every library's fastest kernels and the threads given
                (research runs on CPU; GPU configs).

libjpeg-turbo's SIMD (``JSIMD_FORCENONE``) needs no pin: its integer DCT and colour
conversion give the SIMD and plain-C code the same bytes (tests/test_arithmetic.py checks
it). The environment is read when each library loads, so :func:`pin` runs before torch,
numpy or PIL are imported: in the ``vladapter`` entry point (vladapter.cli) and the tests'
conftest.
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping

ENV = "VLADAPTER_CPU_ARITHMETIC"
LEVELS = ("avx2", "compatible", "native")
DEFAULT = "avx2"
THREADS = 1  # intra-op threads of a pinned process, on every host

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_AVX2 = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "MKL_DYNAMIC": "FALSE",  # MKL may otherwise use fewer threads than asked, by load
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy 2.4's AVX-512 dispatch groups
    "OPENBLAS_CORETYPE": "Haswell",
    **{var: str(THREADS) for var in _THREAD_VARS},
}
_PINNED = {"avx2": _AVX2, "compatible": {**_AVX2, "MKL_CBWR": "COMPATIBLE"}, "native": {}}
# modules that read the environment when they load: pinning after them is too late
_READERS = ("torch", "numpy")
# the level a parent process pinned (its children inherit the variables): a child at another
# level takes back what that pin set before applying its own
_MARK = "VLADAPTER_CPU_ARITHMETIC_PINNED"


def level(environ: MutableMapping[str, str] | None = None) -> str:
    """The level a process runs at: ``VLADAPTER_CPU_ARITHMETIC``, else the default."""
    from vladapter.errors import ConfigError

    value = (os.environ if environ is None else environ).get(ENV) or DEFAULT
    if value not in LEVELS:
        raise ConfigError(f"{ENV}={value!r}: choose one of {', '.join(LEVELS)} (config key cpu_arithmetic)")
    return value


def pinned_env(name: str) -> dict[str, str]:
    """The environment variables of level ``name`` ({} for native)."""
    return dict(_PINNED[name])


def pin(environ: MutableMapping[str, str] | None = None) -> str:
    """Set the variables of this process's level in ``environ`` (default ``os.environ``,
    which the libraries and child processes read) and return the level. They replace
    values already there: pinned means every host computes alike, whatever its own
    settings. When torch or numpy is already loaded in this process, a pin that would
    change their variables cannot act any more: it says so on stderr."""
    env = os.environ if environ is None else environ
    name = level(env)
    wanted = pinned_env(name)
    inherited = env.get(_MARK)
    if inherited in _PINNED and inherited != name:
        for key, value in _PINNED[inherited].items():
            if env.get(key) == value and key not in wanted and key not in _THREAD_VARS:
                del env[key]
    late = [m for m in _READERS if m in sys.modules] if env is os.environ else []
    if late and any(env.get(k) != v for k, v in wanted.items()):
        print(f"vladapter: CPU arithmetic not pinned ({' and '.join(late)} loaded before vladapter's entry "
              f"point); set {ENV} and the variables of vladapter.utils.arithmetic before Python starts",
              file=sys.stderr)
    env.update(wanted)
    env[_MARK] = name
    return name


def threads(requested: int | None) -> int | None:
    """The intra-op threads a command gives torch: the pinned count, else ``requested``."""
    return THREADS if level() != "native" else requested
