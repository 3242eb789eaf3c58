"""A steady C heap for long CPU runs: freed tensor memory stays with the process.

Usage::

    from corredit.heap import steady_heap
    steady_heap()          # once per process, early; True where it took effect

glibc's ``malloc`` serves blocks above an adaptive threshold with ``mmap`` and hands
free memory at the top of its heap back to the kernel once it exceeds a second,
adaptive threshold. A forward pass allocates and frees activations of a few MiB per
layer, so depending on the heap's history every batch may fault its activations back
in, page by page, from fresh zeroed memory. On 2 cores that made the same forward pass
up to 1.8x slower from one process to the next. :func:`steady_heap` fixes both
thresholds: blocks under ``mmap_threshold`` come from the heap, and up to
``trim_threshold`` of free heap is kept for the next batch. Larger blocks (model
weights, logits over a large vocabulary) are still mapped and returned when freed. The
cost: the process's resident memory stays near its peak.

The ``corredit`` command, its run workers and ``analysis/bench_editing.py`` call it at start;
``CORREDIT_STEADY_HEAP=0`` in the environment turns it off there and here. Elsewhere
(macOS, musl) it does nothing and returns False. The settings are process-wide.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

__all__ = ["steady_heap", "DEFAULT_MMAP_THRESHOLD", "DEFAULT_TRIM_THRESHOLD", "ENV_VAR"]

#: Blocks below this many bytes come from the heap (glibc's adaptive maximum: 32 MiB).
DEFAULT_MMAP_THRESHOLD = 32 << 20
#: Free heap memory kept rather than returned to the kernel.
DEFAULT_TRIM_THRESHOLD = 1 << 30
#: Environment variable that turns :func:`steady_heap` off when set to ``0``.
ENV_VAR = "CORREDIT_STEADY_HEAP"

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2 ** 31 - 1


@functools.lru_cache(maxsize=None)
def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (looked up once), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version            # only glibc has it
        libc.mallopt
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def steady_heap(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD,
                trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Fix glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (bytes) for this process
    (see module docstring). Returns True when both took effect; False where the C
    library is not glibc or ``CORREDIT_STEADY_HEAP=0``. Calling it again is harmless."""
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _INT_MAX:
            raise ValueError(f"steady_heap: {name} must be a whole number of bytes in "
                             f"1..{_INT_MAX}, got {value!r}")
    if os.environ.get(ENV_VAR, "").strip() == "0":
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    return libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok
