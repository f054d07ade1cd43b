"""Peak bytes held by torch's CPU allocator over a block of code, counted on every thread.

    with AllocatorPeak() as peak:
        step()
    peak.peak      # bytes: the most held at once inside the block, over what was held when it began

The CPU counterpart of ``torch.cuda.max_memory_allocated() - memory_allocated_at_start``, used by
``bench/bench_memory.py`` and the CPU dry run of ``bench/gpu_check.py`` to check the memory model.

**Why not ``torch.profiler``.** Its memory events (``profile_memory=True``) are recorded only on
threads where the profiler is active. A tensor freed on any other thread never shows as freed, so the
running sum of the events drifts up. Under FSDP2 on the gloo backend that is what happens to the
reduce-scatter and all-gather buffers: a gloo worker thread often drops the last reference once the
collective completes, so the measured peak depended on that race (1.11-1.50 x the model at 100M).
``tests/test_allocator_trace.py`` shows the miss with a plain Python thread.

**What this counts instead.** c10's CPU allocator keeps its own tally (``ProfiledCPUMemoryReporter``)
when the flag ``caffe2_report_cpu_memory_usage`` is on: every allocation and free of the default CPU
allocator, on any thread, updates one counter under a mutex and logs one line at INFO level::

    C10 alloc <n> bytes, total alloc <T> bytes.
    C10 deleted <n> bytes, total alloc <T> bytes.

:class:`AllocatorPeak` switches the flag and the log level on for the block (both are plain globals
of ``libc10``, set through ``ctypes``), sends file descriptor 2 to a temporary file, and
:func:`peak_from_log` reads the lines back::

    T_0  = T_1 - n_1 (first line an alloc) or T_1 + n_1 (a free): the tally before the block
    peak = max(0, max_j T_j - T_0)

Each ``T_j`` is the tally at the moment of its event, so the maximum is exact whatever order the
threads' lines reach the file in (only ``T_0`` assumes the first line is the block's first event; at
the start of a step only the calling thread runs). What it does not see: blocks allocated before the
block began are not in the tally, so their frees are not subtracted (as with the profiler); memory
outside torch's CPU allocator (numpy arrays, gloo's own transport buffers, oneDNN scratch) is not
counted, as ``torch.cuda.max_memory_allocated`` does not count NCCL's.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(rb"C10 (alloc|deleted) (\d+) bytes, total alloc (\d+) bytes")
_INFO = 0  # c10's log severity of INFO (WARNING is 1, the default level)


@dataclass(frozen=True)
class Event:
    """One allocator event: ``nbytes`` > 0 for an allocation, < 0 for a free; ``total`` after it."""

    nbytes: int
    total: int


def parse_log(text: bytes) -> list[Event]:
    """The allocator events in ``text`` (the captured log), in the order their lines appear."""
    return [Event(int(n) if kind == b"alloc" else -int(n), int(total)) for kind, n, total in _LINE.findall(text)]


def peak_from_log(events: list[Event]) -> int:
    """``max(0, max_j T_j - T_0)`` with ``T_0 = T_1 - n_1`` the tally before the first event; 0 if none."""
    if not events:
        return 0
    start = events[0].total - events[0].nbytes
    return max(0, max(e.total for e in events) - start)


def _libc10() -> ctypes.CDLL:
    import torch

    lib_dir = Path(torch.__file__).resolve().parent / "lib"
    for name in ("libc10.so", "libc10.dylib", "c10.dll"):
        if (lib_dir / name).exists():
            return ctypes.CDLL(str(lib_dir / name))
    raise RuntimeError(f"no libc10 shared library in {lib_dir}")


class AllocatorPeak:
    """Peak bytes held by torch's CPU allocator inside the ``with`` block, over what it held before.

    ``peak`` and ``events`` (:class:`Event` list) are set on exit. ``enabled=False`` measures nothing
    (``peak`` stays 0). Not re-entrant: one block at a time per process.
    """

    def __init__(self, enabled: bool = True):
        self.enabled, self.peak, self.events = enabled, 0, []

    def __enter__(self):
        if not self.enabled:
            return self
        lib = _libc10()
        self._flag = ctypes.c_bool.in_dll(lib, "FLAGS_caffe2_report_cpu_memory_usage")
        self._level = ctypes.c_int.in_dll(lib, "FLAGS_caffe2_log_level")
        self._old = (self._flag.value, self._level.value)
        self._log = tempfile.TemporaryFile()
        sys.stderr.flush()
        self._stderr = os.dup(2)
        os.dup2(self._log.fileno(), 2)
        self._level.value, self._flag.value = _INFO, True
        return self

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        self._flag.value, self._level.value = self._old
        sys.stderr.flush()
        os.dup2(self._stderr, 2)
        os.close(self._stderr)
        self._log.seek(0)
        text = self._log.read()
        self._log.close()
        self.events = parse_log(text)
        self.peak = peak_from_log(self.events)
        other = b"\n".join(line for line in text.splitlines() if line and not _LINE.search(line)
                           and b"Memory block of unknown size" not in line)
        if other:  # whatever else the block wrote to stderr (a traceback, a warning) still reaches it
            sys.stderr.buffer.write(other + b"\n")
            sys.stderr.flush()
        return False
