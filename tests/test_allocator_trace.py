"""bench/allocator_trace.py: the CPU allocator's peak, counted on every thread.

What is asserted:

* :func:`peak_from_log` on a scripted alloc/free log equals the peak worked out by hand;
* :class:`AllocatorPeak` around real tensors: an 8 MiB block allocated on this thread and freed on
  another, a 4 MiB block allocated and freed on that other thread, then a second 8 MiB block here.
  At most 8 MiB is ever held (the first block is gone before the second exists), so the peak is
  exactly 8 MiB and the log holds the other thread's free and allocation;
* ``torch.profiler``'s memory events miss that other thread's free: their running sum reaches 16 MiB
  (why the benchmark no longer uses them);
* what the block writes to stderr still reaches stderr, without the allocator's lines.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from allocator_trace import AllocatorPeak, Event, parse_log, peak_from_log  # noqa: E402

MIB = 1 << 20


def test_peak_of_a_scripted_log():
    """Held before: 1000. +100 -> 1100, +50 -> 1150, -100 -> 1050, +300 -> 1350, -50, -300 -> 1000.
    Peak over the start: 1350 - 1000 = 350 (not 450, the sum of all allocations)."""
    log = b"\n".join([
        b"[I1129 00:13:48.2 CPUAllocator.cpp:216] C10 alloc 100 bytes, total alloc 1100 bytes.",
        b"unrelated line",
        b"[I1129 00:13:48.3 CPUAllocator.cpp:216] C10 alloc 50 bytes, total alloc 1150 bytes.",
        b"[I1129 00:13:48.4 CPUAllocator.cpp:255] C10 deleted 100 bytes, total alloc 1050 bytes.",
        b"[I1129 00:13:48.5 CPUAllocator.cpp:216] C10 alloc 300 bytes, total alloc 1350 bytes.",
        b"[I1129 00:13:48.6 CPUAllocator.cpp:255] C10 deleted 50 bytes, total alloc 1300 bytes.",
        b"[I1129 00:13:48.7 CPUAllocator.cpp:255] C10 deleted 300 bytes, total alloc 1000 bytes.",
    ])
    events = parse_log(log)
    assert [e.nbytes for e in events] == [100, 50, -100, 300, -50, -300]
    assert peak_from_log(events) == 350
    assert peak_from_log([]) == 0
    assert peak_from_log([Event(-100, 900)]) == 0  # only a free: nothing held over the start


def _free_on_another_thread() -> None:
    """8 MiB here, freed on a worker thread that also allocates and frees 4 MiB; then 8 MiB here."""
    box = [torch.empty(2 * MIB, dtype=torch.float32)]

    def worker():
        box.pop()  # the last reference: freed on this thread
        torch.empty(MIB, dtype=torch.float32)  # allocated and freed on this thread

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    second = torch.empty(2 * MIB, dtype=torch.float32)
    del second


def test_frees_on_other_threads_are_counted():
    with AllocatorPeak() as peak:
        _free_on_another_thread()
    sizes = [e.nbytes for e in peak.events]
    assert sizes == [8 * MIB, -8 * MIB, 4 * MIB, -4 * MIB, 8 * MIB, -8 * MIB]
    assert peak.peak == 8 * MIB


def test_the_profiler_misses_them():
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _free_on_another_thread()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    assert peak == 16 * MIB


def test_disabled_measures_nothing_and_stderr_passes_through(capfd):
    with AllocatorPeak(enabled=False) as off:
        torch.empty(MIB)
    assert off.peak == 0 and off.events == []
    with AllocatorPeak() as on:
        print("a warning from inside the block", file=sys.stderr)
        torch.empty(MIB)
    err = capfd.readouterr().err
    assert "a warning from inside the block" in err and "C10 alloc" not in err
    assert on.peak == 4 * MIB
