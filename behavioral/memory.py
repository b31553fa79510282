"""Behavioural memory hierarchy of one node: sparse DRAM, L1D, L2, and the message buffer's hooks.

The hierarchy is a functional model with latencies on top, driven by plain calls (no simulator):

* **Caches.** L1D and L2 are set-associative, LRU, write-back and write-allocate, and hold data.
  They are non-inclusive: a DRAM fill installs the line in both, a clean L1 victim is dropped, a
  dirty L1 victim is written into the L2 (which may evict an L2 victim), and a dirty L2 victim is
  written to DRAM. Whenever the L1 holds a line, its copy is the newest.
* **Latency** is counted in core cycles: ``l1_hit_cycles`` for an L1 hit, plus ``l2_hit_cycles``
  for an L2 hit, plus the message-buffer probe for a line the buffer supplies, plus
  ``max(l2_hit_cycles, probe_cycles)`` and the DRAM latency (``dram_latency_ns`` at ``core_ghz``)
  for a DRAM fill: the L2 lookup and the probe run in parallel.
* **The probe split.** The message buffer sits next to the L2 and is probed on every L1 miss; in
  the testbench the probe is an RTL transaction that takes cycles. So a core access is two calls:
  :meth:`MemoryHierarchy.access` (done at once on an L1 hit, otherwise records the miss) and
  :meth:`MemoryHierarchy.complete` (called when the probe has answered; the data is taken then).
* **MSHR rule.** At most one miss per line is outstanding: a second access to the line before its
  miss completes is an error. A coherence invalidation of a line with a miss outstanding waits
  for the miss, unless the miss is ordered after it (its probe is still to be answered).
* **Message buffer.** The buffer and the L2 never hold the same line. A line arriving in a message
  first invalidates the cached copies (:meth:`MemoryHierarchy.invalidate`); a probe hit hands the
  line over to the caches, dirty, because memory does not have it; otherwise the buffer writes the
  line back to DRAM itself (:meth:`MemoryHierarchy.memory_write`).
* **Bus traffic** is counted in 64-byte lines crossing the memory bus between the chip (L2,
  message buffer, NI) and DRAM; L1-L2 transfers stay on chip and are not counted.
"""

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from rtl.layouts import FLIT_BYTES, LINE_BYTES, LINE_WORDS, PA_BITS

from .checks import is_int

__all__ = [
    "line_of",
    "SparseMemory", "CacheLine", "Victim", "Cache", "Access", "MemoryHierarchy",
]

_LINES = (1 << PA_BITS) // LINE_BYTES
_WORD_LIMIT = 1 << (8 * FLIT_BYTES)

#: Which DRAM counter each kind of bus transfer adds to.
_BUS_KINDS = {
    "l2_fill": "dram_reads",
    "l2_writeback": "dram_writes",
    "dma_read": "dram_reads",
    "msgbuf_read": "dram_reads",
    "msgbuf_writeback": "dram_writes",
}


def line_of(pa):
    """Return the physical line address (``pa >> 6``) of the byte address ``pa``."""
    return pa // LINE_BYTES


def _check_line(line):
    if not (is_int(line) and 0 <= line < _LINES):
        raise ValueError(f"line {line!r} is not a physical line address (0 .. {_LINES - 1:#x}); "
                         f"pass pa >> 6 of a {PA_BITS}-bit physical address")


def _check_value(value, what):
    if not (is_int(value) and 0 <= value < _WORD_LIMIT):
        raise ValueError(f"{what} {value!r} is not a 64-bit unsigned integer; "
                         f"store values in 0 .. 2**64 - 1")


def _check_words(words):
    if len(words) != LINE_WORDS:
        raise ValueError(f"a line holds {LINE_WORDS} words, got {len(words)}: {words!r}")
    for index, value in enumerate(words):
        _check_value(value, f"word {index}")


def _split(pa):
    """Return (line, word index) of the aligned word address ``pa``."""
    if not (is_int(pa) and 0 <= pa < 1 << PA_BITS):
        raise ValueError(f"address {pa!r} is outside the {PA_BITS}-bit physical address space")
    if pa % FLIT_BYTES:
        raise ValueError(f"address {pa:#x} is not {FLIT_BYTES}-byte aligned; core accesses are "
                         f"one aligned 64-bit word, use {pa - pa % FLIT_BYTES:#x}")
    return line_of(pa), pa % LINE_BYTES // FLIT_BYTES


class SparseMemory:
    """Physical memory of one node, stored line by line; lines never written read as zeros.

    Storage only: the hierarchy and the cocotb bus adapters wrap the same object, and count
    nothing here.
    """

    def __init__(self):
        self._lines = {}

    @property
    def lines_used(self):
        """Number of lines ever written."""
        return len(self._lines)

    def read_line(self, line):
        """Return a copy of the 8 words of ``line``."""
        _check_line(line)
        return list(self._lines.get(line, [0] * LINE_WORDS))

    def write_line(self, line, words, mask=0xFF):
        """Write word ``i`` of ``words`` into ``line`` where bit ``i`` of ``mask`` is set."""
        _check_line(line)
        _check_words(words)
        if not (is_int(mask) and 0 <= mask < 1 << LINE_WORDS):
            raise ValueError(f"mask {mask!r} is not an {LINE_WORDS}-bit word mask")
        stored = self._lines.setdefault(line, [0] * LINE_WORDS)
        for index, value in enumerate(words):
            if mask >> index & 1:
                stored[index] = value

    def read_word(self, pa):
        """Return the 64-bit word at the aligned address ``pa``."""
        line, index = _split(pa)
        return self._lines.get(line, [0] * LINE_WORDS)[index]

    def write_word(self, pa, value):
        """Write the 64-bit ``value`` at the aligned address ``pa``."""
        line, index = _split(pa)
        _check_value(value, f"value for {pa:#x}")
        self._lines.setdefault(line, [0] * LINE_WORDS)[index] = value


@dataclass
class CacheLine:
    """One cached line; :meth:`Cache.lookup` returns it live, to be changed in place."""
    words: list[int]
    dirty: bool


class Victim(NamedTuple):
    """A line evicted by :meth:`Cache.install`."""
    line: int
    words: list[int]
    dirty: bool


class Cache:
    """A set-associative, LRU cache that holds data; write policy is the hierarchy's.

    Parameters
    ----------
    name : str
        Name used in error messages (``"l1"``, ``"l2"``).
    size_bytes : int
        Capacity; a multiple of ``64 * ways`` giving a power-of-two number of sets.
    ways : int
        Associativity.
    hit_cycles : int
        Core cycles a hit takes in this cache.
    """

    def __init__(self, name, *, size_bytes, ways, hit_cycles):
        if not (is_int(ways) and ways > 0):
            raise ValueError(f"cache {name}: ways {ways!r} must be a positive integer")
        if not (is_int(hit_cycles) and hit_cycles >= 0):
            raise ValueError(f"cache {name}: hit_cycles {hit_cycles!r} must be a non-negative "
                             f"integer")
        way_bytes = LINE_BYTES * ways
        sets = size_bytes // way_bytes if is_int(size_bytes) and size_bytes > 0 else 0
        if sets == 0 or sets * way_bytes != size_bytes or sets & (sets - 1):
            raise ValueError(f"cache {name}: size_bytes {size_bytes!r} must be {way_bytes} bytes "
                             f"(64 * {ways} ways) times a power of two")
        self.name = name
        self.ways = ways
        self.sets = sets
        self.hit_cycles = hit_cycles
        self._sets = [OrderedDict() for _ in range(sets)]   # line -> CacheLine, LRU first

    def _set(self, line):
        return self._sets[line & (self.sets - 1)]

    def __contains__(self, line):
        return line in self._set(line)

    def lookup(self, line, touch=True):
        """Return the :class:`CacheLine` of ``line`` or None; ``touch`` makes it most recent."""
        ways = self._set(line)
        entry = ways.get(line)
        if entry is not None and touch:
            ways.move_to_end(line)
        return entry

    def install(self, line, words, dirty):
        """Hold a copy of ``words`` for ``line`` as the most recent line of its set.

        A line already held is overwritten. Otherwise, when the set is full, its least recently
        used line is evicted and returned as a :class:`Victim`; the result is None when nothing
        was evicted.
        """
        _check_line(line)
        _check_words(words)
        ways = self._set(line)
        victim = None
        if line not in ways and len(ways) == self.ways:
            old_line, old = ways.popitem(last=False)
            victim = Victim(old_line, old.words, old.dirty)
        ways[line] = CacheLine(list(words), bool(dirty))
        ways.move_to_end(line)
        return victim

    def remove(self, line):
        """Drop ``line``; return its :class:`CacheLine`, or None if it was not held."""
        return self._set(line).pop(line, None)


@dataclass
class Access:
    """One core access of an aligned 64-bit word.

    ``value`` is the value stored, or the value loaded once ``done``; ``cycles`` is the latency in
    core cycles and ``level`` where the data came from (``"l1"``, ``"l2"``, ``"msgbuf"`` or
    ``"dram"``), both set once ``done``.
    """
    pa: int
    write: bool
    value: int | None = None
    done: bool = False
    cycles: int | None = None
    level: str | None = None

    @property
    def line(self):
        """The physical line address of :attr:`pa`."""
        return line_of(self.pa)


class MemoryHierarchy:
    """L1D, L2 and DRAM of one node, with the hooks of the message buffer and the NI.

    See the module docstring for the policies. Counters are in :attr:`counters` (lines for the
    DRAM and bus counts) and :attr:`bus_by_kind`; ``l2_misses`` includes the misses the message
    buffer served (``msgbuf_hits``), and ``invalidations`` counts every :meth:`invalidate`.

    Parameters
    ----------
    memory : SparseMemory or None
        The node's physical memory; a new empty one by default.
    l1_bytes, l1_ways, l1_hit_cycles : int
        L1D capacity, associativity and hit latency.
    l2_bytes, l2_ways, l2_hit_cycles : int
        L2 capacity, associativity and hit latency (added to the L1's on an L2 hit).
    dram_latency_ns : float
        DRAM access time, added to a DRAM fill.
    core_ghz : float
        Core clock, which converts ``dram_latency_ns`` into :attr:`dram_cycles`.
    inject_into_l2 : bool
        :meth:`memory_write` installs the line in the L2, dirty, rather than writing DRAM.
    """

    def __init__(self, memory=None, *, l1_bytes=32768, l1_ways=4, l1_hit_cycles=2,
                 l2_bytes=1048576, l2_ways=8, l2_hit_cycles=12, dram_latency_ns=60.0,
                 core_ghz=2.0, inject_into_l2=False):
        if memory is not None and not isinstance(memory, SparseMemory):
            raise TypeError(f"memory must be a SparseMemory or None, not {memory!r}")
        if not (isinstance(dram_latency_ns, (int, float)) and 0 <= dram_latency_ns < math.inf):
            raise ValueError(f"dram_latency_ns {dram_latency_ns!r} must be a finite non-negative "
                             f"number of nanoseconds")
        if not (isinstance(core_ghz, (int, float)) and 0 < core_ghz < math.inf):
            raise ValueError(f"core_ghz {core_ghz!r} must be the core clock, a finite positive "
                             f"number of GHz")
        self.memory = SparseMemory() if memory is None else memory
        self.l1 = Cache("l1", size_bytes=l1_bytes, ways=l1_ways, hit_cycles=l1_hit_cycles)
        self.l2 = Cache("l2", size_bytes=l2_bytes, ways=l2_ways, hit_cycles=l2_hit_cycles)
        self.dram_latency_ns = dram_latency_ns
        self.core_ghz = core_ghz
        self.inject_into_l2 = bool(inject_into_l2)
        self._misses = {}                 # line -> the outstanding Access (the MSHRs)
        self.reset_counters()

    @property
    def dram_cycles(self):
        """DRAM latency in core cycles."""
        return round(self.dram_latency_ns * self.core_ghz)

    def reset_counters(self):
        """Zero :attr:`counters` and :attr:`bus_by_kind`."""
        self.counters = dict.fromkeys(
            ["l1_hits", "l1_misses", "l2_hits", "l2_misses", "msgbuf_hits", "dram_reads",
             "dram_writes", "bus_transfers", "invalidations", "dirty_handbacks",
             "l2_injections"], 0)
        self.bus_by_kind = dict.fromkeys(_BUS_KINDS, 0)
        self._watched = {}
        self.watched_misses = Counter()

    def load_now(self, line):
        """Load ``line`` (a line number) and complete it at once, a miss from the L2 or DRAM
        (for lines the message buffer never holds: the kernel's, a program's own); return the
        done :class:`Access`. Counted as any load."""
        access = self.access(line * LINE_BYTES)
        if not access.done:
            self.complete(access)
        return access

    def preload(self, lines):
        """Load ``lines`` (line numbers) in order with :meth:`load_now`, in no simulated time:
        what a program that ran before the simulation began left in the caches."""
        for line in lines:
            self.load_now(line)

    def watch(self, lines, name):
        """Count the L2 misses of ``lines`` (line numbers) in :attr:`watched_misses` ``[name]``:
        a program's own misses, told from everyone else's."""
        self._watched.update(dict.fromkeys(lines, name))
        self.watched_misses[name] += 0

    def pending(self, line):
        """Return whether a miss is outstanding for ``line``."""
        return line in self._misses

    # Core side --------------------------------------------------------------------------------

    def access(self, pa, *, write=False, value=None):
        """Start a load (``write=False``) or a store of ``value`` at the aligned address ``pa``.

        On an L1 hit the access is performed and returned done. On an L1 miss the miss is recorded
        and the access returned not done: probe the message buffer, then call :meth:`complete`.

        Raises
        ------
        RuntimeError
            If a miss is already outstanding for the line.
        """
        line, _ = _split(pa)
        if write:
            _check_value(value, f"store value for {pa:#x}")
        elif value is not None:
            raise ValueError(f"load of {pa:#x} given value {value!r}; pass write=True to store")
        if self.pending(line):
            raise RuntimeError(f"access to {pa:#x}: a miss is already outstanding for line "
                               f"{line:#x}; complete it before accessing the line again")
        access = Access(pa, bool(write), value)
        entry = self.l1.lookup(line)
        if entry is None:
            self.counters["l1_misses"] += 1
            self._misses[line] = access
            return access
        self.counters["l1_hits"] += 1
        access.level, access.cycles = "l1", self.l1.hit_cycles
        self._perform(access, entry)
        return access

    def complete(self, access, buffered=None, probe_cycles=0):
        """Finish the missed ``access`` once the message-buffer probe has answered.

        Parameters
        ----------
        access : Access
            An access :meth:`access` returned not done.
        buffered : list of int or None
            The 8 words the message buffer handed over on a probe hit; None on a probe miss.
        probe_cycles : int
            Core cycles the probe took.

        Raises
        ------
        RuntimeError
            If ``access`` is not an outstanding miss, or ``buffered`` is given while the L2 holds
            the line.
        """
        line = access.line
        if self._misses.get(line) is not access:
            raise RuntimeError(f"access to {access.pa:#x} is not an outstanding miss; complete "
                               f"each access that access() returned not done, once")
        if not (is_int(probe_cycles) and probe_cycles >= 0):
            raise ValueError(f"probe_cycles {probe_cycles!r} must be a non-negative integer")
        if buffered is not None:
            _check_words(buffered)
            if line in self.l2:
                raise RuntimeError(f"line {line:#x} supplied by the message buffer is also in the "
                                   f"L2; the two must never hold the same line")
        words, access.level, access.cycles = self._fetch(line, buffered, probe_cycles)
        self._fill_l1(line, words)
        del self._misses[line]
        self._perform(access, self.l1.lookup(line, touch=False))
        return access

    def read_word_coherent(self, pa):
        """Return the newest value of the word at ``pa`` among L1, L2 and memory.

        Changes no state and no counter; a check for testbenches, not a modelled access.
        """
        line, index = _split(pa)
        for cache in (self.l1, self.l2):
            entry = cache.lookup(line, touch=False)
            if entry is not None:
                return entry.words[index]
        return self.memory.read_word(pa)

    # Message buffer and NI side ---------------------------------------------------------------

    def invalidate(self, line, *, miss_ordered_after=False):
        """Drop the cached copies of ``line``, which a message is about to overwrite.

        Returns the newest dirty copy (the L1's if dirty, else the L2's if dirty) for the message
        buffer to merge, or None when no cached copy was dirty (memory is up to date).

        Parameters
        ----------
        miss_ordered_after : bool
            A miss outstanding for the line is ordered after the invalidation: its probe has not
            been answered yet and will be answered with the message's line. Without it, an
            outstanding miss is an error: the request must wait until the miss completes.

        Raises
        ------
        RuntimeError
            If a miss is outstanding for the line and ``miss_ordered_after`` is not set.
        """
        _check_line(line)
        if self.pending(line) and not miss_ordered_after:
            raise RuntimeError(f"invalidate of line {line:#x} while a miss is outstanding for it; "
                               f"defer it until the miss completes")
        dirty = self._dirty_copy(line)
        self.l1.remove(line)
        self.l2.remove(line)
        self.counters["invalidations"] += 1
        if dirty is not None:
            self.counters["dirty_handbacks"] += 1
        return dirty

    def dma_read(self, line):
        """Return ``(words, cycles)`` of ``line`` for a DMA send: the dirty cached copy if any
        (snooped in the L2's hit time), else memory's (the DRAM latency).

        The caches are left as they are; only a read from memory crosses the bus.
        """
        _check_line(line)
        dirty = self._dirty_copy(line)
        if dirty is not None:
            return dirty, self.l2.hit_cycles
        return self._read_dram(line, "dma_read"), self.dram_cycles

    def memory_read(self, line):
        """Return ``line`` straight from DRAM, for the message buffer to fill a partial line."""
        _check_line(line)
        return self._read_dram(line, "msgbuf_read")

    def memory_write(self, line, words):
        """Write the message buffer's ``line`` straight to DRAM; the caches are not involved.
        With ``inject_into_l2``, install it in the L2, dirty, instead (its victim written back
        if dirty; ``l2_injections`` counts it); the L1 holds no copy (the arrival invalidated it),
        and a miss outstanding for the line completes from the L2.
        """
        _check_line(line)
        _check_words(words)
        if not self.inject_into_l2:
            self._write_dram(line, words, "msgbuf_writeback")
            return
        self.l1.remove(line)
        self.counters["l2_injections"] += 1
        self._fill_l2(line, list(words), dirty=True)

    # Internals --------------------------------------------------------------------------------

    def _perform(self, access, entry):
        index = access.pa % LINE_BYTES // FLIT_BYTES
        if access.write:
            entry.words[index] = access.value
            entry.dirty = True
        else:
            access.value = entry.words[index]
        access.done = True

    def _fetch(self, line, buffered, probe_cycles):
        """Return (words, level, cycles) of an L1 miss, filling the L2 as needed."""
        l1_cycles = self.l1.hit_cycles
        entry = self.l2.lookup(line)
        if entry is not None:
            self.counters["l2_hits"] += 1
            return list(entry.words), "l2", l1_cycles + self.l2.hit_cycles
        self.counters["l2_misses"] += 1
        if line in self._watched:
            self.watched_misses[self._watched[line]] += 1
        if buffered is not None:
            self.counters["msgbuf_hits"] += 1
            self._fill_l2(line, buffered, dirty=True)
            return list(buffered), "msgbuf", l1_cycles + probe_cycles
        words = self._read_dram(line, "l2_fill")
        self._fill_l2(line, words, dirty=False)
        cycles = l1_cycles + max(self.l2.hit_cycles, probe_cycles) + self.dram_cycles
        return words, "dram", cycles

    def _fill_l1(self, line, words):
        victim = self.l1.install(line, words, dirty=False)
        if victim is not None and victim.dirty:
            self._fill_l2(victim.line, victim.words, dirty=True)

    def place_in_dram(self, pa, value):
        """Put ``value`` at ``pa`` in DRAM and in no cache, as if written there long before: a
        cached copy of its line is dropped, written back first if dirty (so that its other
        words stay). Nothing is counted: it stands for the past.

        Raises
        ------
        RuntimeError
            If a miss is outstanding for the line.
        """
        line = line_of(pa)
        if self.pending(line):
            raise RuntimeError(f"place_in_dram of line {line:#x} while a miss is outstanding for "
                               f"it")
        dirty = self._dirty_copy(line)
        if dirty is not None:
            self.memory.write_line(line, dirty)
        self.l1.remove(line)
        self.l2.remove(line)
        self.memory.write_word(pa, value)

    def _fill_l2(self, line, words, dirty):
        victim = self.l2.install(line, words, dirty)
        if victim is not None and victim.dirty:
            self._write_dram(victim.line, victim.words, "l2_writeback")

    def _dirty_copy(self, line):
        for cache in (self.l1, self.l2):
            entry = cache.lookup(line, touch=False)
            if entry is not None and entry.dirty:
                return list(entry.words)
        return None

    def _read_dram(self, line, kind):
        self._count_bus(kind)
        return self.memory.read_line(line)

    def _write_dram(self, line, words, kind):
        self._count_bus(kind)
        self.memory.write_line(line, words)

    def _count_bus(self, kind):
        self.counters[_BUS_KINDS[kind]] += 1
        self.counters["bus_transfers"] += 1
        self.bus_by_kind[kind] += 1
