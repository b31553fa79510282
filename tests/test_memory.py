"""The behavioural memory hierarchy: storage, caches, latencies, message-buffer hooks, counters."""

import random
import re

import pytest

from behavioral.memory import Access, Cache, MemoryHierarchy, SparseMemory
from rtl.layouts import LINE_BYTES, LINE_WORDS


def pa(line, word=0):
    """Return the address of word ``word`` of ``line``."""
    return line * LINE_BYTES + word * 8


def run(hierarchy, address, *, write=False, value=None, buffered=None, probe_cycles=0):
    """Access ``address`` and, on an L1 miss, complete it with the probe's answer."""
    access = hierarchy.access(address, write=write, value=value)
    return access if access.done else hierarchy.complete(access, buffered, probe_cycles)


def tiny(**kwargs):
    """Return a hierarchy whose L1 and L2 hold one line each, unless ``kwargs`` say otherwise."""
    return MemoryHierarchy(**{"l1_bytes": 64, "l1_ways": 1, "l2_bytes": 64, "l2_ways": 1,
                              **kwargs})


# Sparse memory and caches -------------------------------------------------------------------------

def test_sparse_memory_reads_zeros_and_writes_masked_words():
    memory = SparseMemory()
    assert memory.read_line(5) == [0] * 8 and memory.lines_used == 0
    memory.write_line(5, list(range(1, 9)), mask=0b1010_0001)
    assert memory.read_line(5) == [1, 0, 0, 0, 0, 6, 0, 8]
    memory.read_line(5)[0] = 99                     # a copy, not the stored line
    memory.write_word(pa(5, 1), 2**64 - 1)
    assert memory.read_word(pa(5)) == 1 and memory.read_word(pa(5, 1)) == 2**64 - 1
    assert memory.lines_used == 1


@pytest.mark.parametrize("call, error", [
    (lambda m: m.read_line(1 << 26), "line 67108864 is not a physical line address"),
    (lambda m: m.read_line(-1), "line -1 is not a physical line address"),
    (lambda m: m.write_line(0, [0] * 7), "a line holds 8 words, got 7"),
    (lambda m: m.write_line(0, [0] * 7 + [1 << 64]), "word 7 18446744073709551616 is not a 64-bit"),
    (lambda m: m.write_line(0, [0] * 8, mask=0x100), "mask 256 is not an 8-bit word mask"),
    (lambda m: m.read_word(0x1004), "address 0x1004 is not 8-byte aligned"),
    (lambda m: m.write_word(1 << 32, 0), "address 4294967296 is outside the 32-bit"),
    (lambda m: m.write_word(8, -1), "value for 0x8 -1 is not a 64-bit unsigned integer"),
])
def test_sparse_memory_rejects_bad_arguments(call, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        call(SparseMemory())


@pytest.mark.parametrize("kwargs, error", [
    (dict(size_bytes=192, ways=1), "size_bytes 192 must be 64 bytes (64 * 1 ways) times a power"),
    (dict(size_bytes=256, ways=3), "size_bytes 256 must be 192 bytes"),
    (dict(size_bytes=256, ways=0), "ways 0 must be a positive integer"),
    (dict(size_bytes=256, ways=1, hit_cycles=-1), "hit_cycles -1 must be a non-negative"),
])
def test_cache_rejects_bad_geometry(kwargs, error):
    with pytest.raises(ValueError, match=re.escape(f"cache t: {error}")):
        Cache("t", **{"hit_cycles": 1, **kwargs})


def test_cache_evicts_least_recently_used_and_returns_dirty_victims():
    cache = Cache("t", size_bytes=256, ways=2, hit_cycles=1)       # two sets of two ways
    assert cache.install(0, [0] * 8, dirty=True) is None
    assert cache.install(2, [2] * 8, dirty=False) is None
    assert cache.install(1, [1] * 8, dirty=False) is None          # the other set
    cache.lookup(0)
    cache.lookup(2, touch=False)                                    # 2 stays least recent
    assert cache.install(4, [4] * 8, dirty=False) == (2, [2] * 8, False)
    assert cache.install(4, [5] * 8, dirty=True) is None           # overwritten in place
    assert cache.lookup(4).words == [5] * 8 and cache.lookup(4).dirty
    assert cache.install(6, [6] * 8, dirty=False) == (0, [0] * 8, True)
    assert 0 not in cache and 1 in cache
    assert cache.remove(4).dirty and cache.remove(4) is None


# Latencies and the probe split --------------------------------------------------------------------

def test_latencies_and_levels():
    hierarchy = MemoryHierarchy(l1_bytes=64, l1_ways=1)
    assert hierarchy.dram_cycles == 120
    miss = hierarchy.access(pa(1))
    assert not miss.done and hierarchy.pending(1)
    assert hierarchy.complete(miss, probe_cycles=5) == Access(pa(1), False, 0, True, 134, "dram")
    assert not hierarchy.pending(1)
    assert run(hierarchy, pa(1, 7)) == Access(pa(1, 7), False, 0, True, 2, "l1")
    assert run(hierarchy, pa(2), probe_cycles=30).cycles == 2 + 30 + 120   # probe outlasts L2
    assert run(hierarchy, pa(1)) == Access(pa(1), False, 0, True, 2 + 12, "l2")
    assert MemoryHierarchy(dram_latency_ns=50, core_ghz=3.0).dram_cycles == 150


@pytest.mark.parametrize("kwargs, error", [
    (dict(core_ghz=0), "core_ghz 0 must be the core clock"),
    (dict(dram_latency_ns=-1), "dram_latency_ns -1 must be a finite non-negative"),
    (dict(l1_bytes=1000), "cache l1: size_bytes 1000 must be 256 bytes"),
    (dict(l2_hit_cycles=-1), "cache l2: hit_cycles -1"),
])
def test_hierarchy_rejects_bad_parameters(kwargs, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        MemoryHierarchy(**kwargs)


def test_hierarchy_rejects_a_memory_of_another_kind():
    with pytest.raises(TypeError, match="memory must be a SparseMemory or None, not {}"):
        MemoryHierarchy({})


def test_access_rejects_unaligned_addresses_and_a_second_miss_to_a_line():
    hierarchy = MemoryHierarchy()
    with pytest.raises(ValueError, match="address 0x1004 is not 8-byte aligned"):
        hierarchy.access(0x1004)
    with pytest.raises(ValueError, match="pass write=True to store"):
        hierarchy.access(0x1000, value=3)
    with pytest.raises(ValueError, match="store value for 0x1000 None"):
        hierarchy.access(0x1000, write=True)
    miss = hierarchy.access(0x1000)
    with pytest.raises(RuntimeError, match="a miss is already outstanding for line 0x40"):
        hierarchy.access(0x1038, write=True, value=1)
    hierarchy.complete(miss)
    with pytest.raises(RuntimeError, match="is not an outstanding miss"):
        hierarchy.complete(miss)


def test_store_then_load_returns_the_stored_value():
    hierarchy = tiny()
    for line in (1, 2, 3):                           # each store evicts the previous line
        run(hierarchy, pa(line, line), write=True, value=line * 100)
    assert run(hierarchy, pa(3, 3)).level == "l1"
    assert [run(hierarchy, pa(line, line)).value for line in (1, 2, 3)] == [100, 200, 300]


# Message buffer and NI hooks ----------------------------------------------------------------------

def test_buffered_line_lands_dirty_in_l2_and_is_written_back_on_eviction():
    hierarchy = tiny()
    message = list(range(10, 18))
    loaded = run(hierarchy, pa(1, 3), buffered=message, probe_cycles=7)
    assert (loaded.value, loaded.level, loaded.cycles) == (13, "msgbuf", 2 + 7)
    assert hierarchy.l2.lookup(1).dirty and hierarchy.l2.lookup(1).words == message
    assert hierarchy.memory.read_line(1) == [0] * 8
    run(hierarchy, pa(2))                            # the one-line L2 evicts line 1
    assert hierarchy.memory.read_line(1) == message
    assert hierarchy.counters | {"msgbuf_hits": 1, "l2_misses": 2, "dram_reads": 1,
                                 "dram_writes": 1, "bus_transfers": 2} == hierarchy.counters
    assert hierarchy.bus_by_kind == {"l2_fill": 1, "l2_writeback": 1, "dma_read": 0,
                                     "msgbuf_read": 0, "msgbuf_writeback": 0}


def test_buffered_line_also_in_l2_is_an_error():
    hierarchy = MemoryHierarchy(l1_bytes=64, l1_ways=1)
    run(hierarchy, pa(1))
    run(hierarchy, pa(2))                            # line 1 is now in the L2 only
    miss = hierarchy.access(pa(1))
    with pytest.raises(RuntimeError, match="line 0x1 supplied by the message buffer is also in"):
        hierarchy.complete(miss, buffered=[0] * 8)


def test_invalidate_hands_back_l1_dirty_data_over_l2s():
    hierarchy = tiny()
    run(hierarchy, pa(1), buffered=[5] * 8)          # dirty in the L2, clean in the L1
    run(hierarchy, pa(1, 2), write=True, value=9)    # dirty in the L1 too, and newer
    assert hierarchy.invalidate(1) == [5, 5, 9, 5, 5, 5, 5, 5]
    assert 1 not in hierarchy.l1 and 1 not in hierarchy.l2
    assert (hierarchy.counters["invalidations"], hierarchy.counters["dirty_handbacks"]) == (1, 1)


def test_invalidate_hands_back_l2_dirty_data_when_the_l1_has_none():
    hierarchy = tiny(l2_bytes=128, l2_ways=2)
    run(hierarchy, pa(1, 6), write=True, value=4)
    run(hierarchy, pa(2))                            # the L1 writes dirty line 1 into the L2
    assert 1 not in hierarchy.l1 and hierarchy.l2.lookup(1).dirty
    assert hierarchy.invalidate(1) == [0, 0, 0, 0, 0, 0, 4, 0]
    assert 1 not in hierarchy.l2


def test_invalidate_of_clean_or_absent_line_returns_none():
    hierarchy = MemoryHierarchy()
    run(hierarchy, pa(1))
    assert hierarchy.invalidate(1) is None and 1 not in hierarchy.l1 and 1 not in hierarchy.l2
    assert hierarchy.invalidate(7) is None
    assert (hierarchy.counters["invalidations"], hierarchy.counters["dirty_handbacks"]) == (2, 0)


def test_invalidate_raises_while_a_miss_is_outstanding():
    hierarchy = MemoryHierarchy()
    miss = hierarchy.access(pa(1), write=True, value=1)
    with pytest.raises(RuntimeError, match="defer it until the miss completes"):
        hierarchy.invalidate(1)
    hierarchy.complete(miss)
    assert hierarchy.invalidate(1) == [1, 0, 0, 0, 0, 0, 0, 0]


def test_dma_read_sees_dirty_cached_data_without_a_dram_read():
    hierarchy = MemoryHierarchy()
    run(hierarchy, pa(1, 4), write=True, value=77)   # one DRAM fill
    assert hierarchy.dma_read(1) == ([0, 0, 0, 0, 77, 0, 0, 0], hierarchy.l2.hit_cycles)
    assert hierarchy.counters["dram_reads"] == 1 and hierarchy.l1.lookup(1).dirty
    hierarchy.memory.write_line(2, [3] * 8)
    assert hierarchy.dma_read(2) == ([3] * 8, hierarchy.dram_cycles)
    assert hierarchy.counters["dram_reads"] == 2 and hierarchy.bus_by_kind["dma_read"] == 1


def test_a_word_placed_in_dram_leaves_no_cached_copy_and_keeps_the_lines_other_words():
    hierarchy = MemoryHierarchy()
    run(hierarchy, pa(1, 4), write=True, value=77)   # line 1 dirty in the L1
    counters = dict(hierarchy.counters)
    hierarchy.place_in_dram(pa(1, 2), 5)
    assert 1 not in hierarchy.l1 and 1 not in hierarchy.l2
    assert hierarchy.memory.read_line(1) == [0, 0, 5, 0, 77, 0, 0, 0]
    assert hierarchy.dma_read(1) == ([0, 0, 5, 0, 77, 0, 0, 0], hierarchy.dram_cycles)
    assert {name: value for name, value in hierarchy.counters.items()
            if name != "dram_reads" and name != "bus_transfers"} == \
        {name: value for name, value in counters.items()
         if name != "dram_reads" and name != "bus_transfers"}
    miss = hierarchy.access(pa(3, 0))
    with pytest.raises(RuntimeError, match="place_in_dram of line 0x3 while a miss is "
                                           "outstanding for it"):
        hierarchy.place_in_dram(pa(3, 1), 1)
    hierarchy.complete(miss)


def test_an_injecting_hierarchy_takes_the_buffers_write_backs_into_the_l2():
    """``inject_into_l2``: a write-back of the message buffer is installed in the L2, dirty, and
    crosses no bus; its dirty victim goes to DRAM; a load of it is an L2 hit; the L1's stale copy
    is dropped."""
    hierarchy = tiny(l2_bytes=128, l2_ways=2, inject_into_l2=True)
    run(hierarchy, pa(1, 0), write=True, value=4)
    run(hierarchy, pa(3))                 # line 1 dirty into the L2 (the L1 holds one line)
    before = dict(hierarchy.counters)
    hierarchy.memory_write(5, [7] * 8)
    assert 5 in hierarchy.l2 and hierarchy.l2.lookup(5, touch=False).dirty and 5 not in hierarchy.l1
    assert hierarchy.memory.read_line(5) == [0] * 8
    assert hierarchy.counters["l2_injections"] == 1
    assert hierarchy.counters["bus_transfers"] == before["bus_transfers"]
    hierarchy.memory_write(9, [2] * 8)    # evicts dirty line 1 (LRU) to DRAM
    assert hierarchy.memory.read_word(pa(1, 0)) == 4
    assert hierarchy.counters["dram_writes"] == before["dram_writes"] + 1
    assert run(hierarchy, pa(9, 3)).level == "l2" and run(hierarchy, pa(9, 3)).value == 2
    # (a miss outstanding completes from the L2)
    miss = hierarchy.access(pa(11, 1))
    hierarchy.memory_write(11, [6] * 8)
    assert hierarchy.complete(miss).value == 6 and miss.level == "l2"


def test_counters_are_exact_and_reset():
    hierarchy = tiny()
    run(hierarchy, pa(1))
    run(hierarchy, pa(1))
    hierarchy.memory_write(5, [1] * 8)
    assert hierarchy.memory_read(5) == [1] * 8
    run(hierarchy, pa(2), write=True, value=1)
    # Line 3's fill evicts line 2 from the L2 (clean) and from the L1 (dirty, back into the L2,
    # evicting line 3); line 4's fill then writes line 2 to DRAM.
    run(hierarchy, pa(3))
    run(hierarchy, pa(4))
    assert hierarchy.memory.read_word(pa(2)) == 1
    assert hierarchy.counters == {
        "l1_hits": 1, "l1_misses": 4, "l2_hits": 0, "l2_misses": 4, "msgbuf_hits": 0,
        "dram_reads": 5, "dram_writes": 2, "bus_transfers": 7, "invalidations": 0,
        "dirty_handbacks": 0, "l2_injections": 0}
    assert hierarchy.bus_by_kind == {"l2_fill": 4, "l2_writeback": 1, "dma_read": 0,
                                     "msgbuf_read": 1, "msgbuf_writeback": 1}
    hierarchy.reset_counters()
    assert not any(hierarchy.counters.values()) and not any(hierarchy.bus_by_kind.values())


# Random traffic -----------------------------------------------------------------------------------

class Traffic:
    """Random core, message-buffer and NI traffic on tiny caches, checked against a flat dict.

    A message line invalidates the cached copies, merges the dirty data handed back (or memory's),
    overwrites some words, and is then written back at once or held in the buffer until a probe
    hands it to a missing core access or a later write-back, which may land while the miss is
    outstanding (into the L2 with ``inject_into_l2``).
    """

    def __init__(self, seed, **hierarchy):
        self.seed = seed
        self.rng = random.Random(seed)
        self.hierarchy = MemoryHierarchy(l1_bytes=256, l1_ways=2, l2_bytes=1024, l2_ways=4,
                                         **hierarchy)
        self.lines = self.rng.sample(range(1 << 26), 300)
        self.reference = {}          # address -> the last value written by anyone
        self.misses = {}             # line -> its outstanding Access
        self.buffer = {}             # line -> the words the message buffer holds

    def check(self, got, want, what):
        assert got == want, f"seed {self.seed}: {what}: got {got}, want {want}"

    def expected_line(self, line):
        return [self.reference.get(pa(line, word), 0) for word in range(LINE_WORDS)]

    def pick_line(self):
        """Return a line, mostly a hot one so that the caches hit; its miss is completed first."""
        line = self.rng.choice(self.lines[:12] if self.rng.random() < 0.8 else self.lines)
        if line in self.misses:
            self.complete(line)
        return line

    def core_access(self):
        address = pa(self.pick_line(), self.rng.randrange(LINE_WORDS))
        write = self.rng.random() < 0.4
        access = self.hierarchy.access(address, write=write,
                                       value=self.rng.getrandbits(64) if write else None)
        if access.done:
            self.retire(access)
        else:
            self.misses[access.line] = access

    def complete(self, line):
        access = self.misses.pop(line)
        self.retire(self.hierarchy.complete(access, self.buffer.pop(line, None),
                                            self.rng.randrange(20)))

    def retire(self, access):
        if access.write:
            self.reference[access.pa] = access.value
        else:
            self.check(access.value, self.reference.get(access.pa, 0),
                       f"load of {access.pa:#x} from {access.level}")

    def message(self):
        line = self.pick_line()
        dirty = self.hierarchy.invalidate(line)
        words = self.buffer.pop(line, None)
        if words is None:
            words = dirty if dirty is not None else self.hierarchy.memory_read(line)
        for word in self.rng.sample(range(LINE_WORDS), self.rng.randrange(1, 9)):
            words[word] = self.reference[pa(line, word)] = self.rng.getrandbits(64)
        if self.rng.random() < 0.5:
            self.buffer[line] = words
        else:
            self.hierarchy.memory_write(line, words)

    def write_back(self):
        if self.buffer:
            line = self.rng.choice(list(self.buffer))
            self.hierarchy.memory_write(line, self.buffer.pop(line))

    def dma(self):
        line = self.rng.choice(self.lines)
        if line not in self.buffer:                  # the NI reads a buffered line from the buffer
            self.check(self.hierarchy.dma_read(line)[0], self.expected_line(line),
                       f"dma {line:#x}")

    def drain(self):
        """Complete every miss, write the buffer back, and check every word written."""
        for line in list(self.misses):
            self.complete(line)
        while self.buffer:
            self.write_back()
        for address, value in self.reference.items():
            self.check(self.hierarchy.read_word_coherent(address), value, f"word {address:#x}")


@pytest.mark.parametrize("inject", [False, True])
def test_random_traffic_against_a_flat_reference(seed, inject):
    traffic = Traffic(seed, inject_into_l2=inject)
    side_traffic = [traffic.message, traffic.write_back, traffic.dma]
    for _ in range(20_000):
        traffic.core_access()
        if traffic.misses and traffic.rng.random() < 0.7:
            traffic.complete(traffic.rng.choice(list(traffic.misses)))
        if traffic.rng.random() < 0.2:
            traffic.rng.choice(side_traffic)()
    traffic.drain()
    counters = traffic.hierarchy.counters
    assert counters["bus_transfers"] == counters["dram_reads"] + counters["dram_writes"]
    assert counters["bus_transfers"] == sum(traffic.hierarchy.bus_by_kind.values())
    idle = [name for name, count in counters.items()
            if count == 0 and (inject or name != "l2_injections")]
    assert not idle, f"seed {traffic.seed}: the traffic never exercised {idle}"
