"""l2lab.heap: within ``reuse_freed_memory`` freed blocks stay in the heap and serve the next allocations (glibc)."""

import resource

import numpy as np
import pytest

from l2lab.heap import _LIBC, reuse_freed_memory

BLOCK = 8 << 20
BLOCKS = 12  # 96 MiB alive at once, then freed: more than glibc keeps free at the top of the heap by default


def _faults_of_a_round() -> int:
    """Page faults while writing ``BLOCKS`` fresh arrays that are all alive at once, then freeing them (the
    pattern of one ingest batch)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    alive = []
    for _ in range(BLOCKS):
        a = np.empty(BLOCK, np.uint8)
        a[::4096] = 1  # touch every page
        alive.append(a)
    del alive, a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(_LIBC is None, reason="glibc only")
def test_a_second_round_reuses_the_first_rounds_memory():
    with reuse_freed_memory() as took:
        assert took
        first = _faults_of_a_round()
        second = _faults_of_a_round()
    # measured: 6,163 then 0 (without the settings: 5,671 then 6,162; numpy asks for huge pages, so a fault
    # may map more than 4 KiB)
    assert first > 1000  # the heap grew (so the count is meaningful)
    assert second < first // 10, (first, second)


def test_without_glibc_it_is_a_no_op(monkeypatch):
    import l2lab.heap as heap

    monkeypatch.setattr(heap, "_LIBC", None)
    with heap.reuse_freed_memory() as took:
        assert took is False
