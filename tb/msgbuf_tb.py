"""Testbench of the message buffer: the behavioural memory hierarchy bound to its ports.

Drivers put :class:`behavioral.memory.MemoryHierarchy` on the buffer's core side (``coh_req`` /
``coh_resp``, ``mc_lookup`` / ``mc_data``) and memory side (``mem_write``, ``mem_read`` /
``mem_read_data``); the testbench plays the RX engine (``rx_line``, ``rx_data``), the NI's reads
(``ni_read`` / ``ni_data``) and a sender staging lines (``tx_*``).

Scoreboard: a flat reference memory takes every write when it happens (a store when the core
performs it, a fill when its last word is taken, or, if the caches still own the line then, when
they give it up: as its coherence request is taken, or, for a request that waits for a miss whose
probe was taken before it, once that miss is done), and every read is checked against it when it
happens (a load when performed, a probe hit or an NI read when its last word is taken, a line
written back when its last word is taken). :class:`behavioral.msgbuf.MessageBufferModel` checks
which lines the buffer holds: probe hits and misses, and write-backs oldest first.

The core caches keep their side of the coherence bargain (see :class:`rtl.msgbuf.MessageBuffer`):
a coherence request for a line whose miss has had its probe taken is answered once that miss
completes; otherwise at once (after ``coh_cycles``), invalidating the line.
"""

import random
from collections import Counter, deque
from dataclasses import dataclass, field

import cocotb
from cocotb.triggers import ClockCycles, Event

from behavioral.memory import MemoryHierarchy, SparseMemory, line_of
from behavioral.msgbuf import MessageBufferModel
from rtl.layouts import (LINE_BYTES, LINE_WORDS, CohResponse, LineBeat, LineRequest, MemWriteBeat,
                         MsgBufTxOp, RxFillBeat, RxLineHint, RxLineRequest, WordBeat, codec,
                         msgbuf_line_index_layout, msgbuf_tx_command_layout)

from .component_tb import ComponentTB
from .stream import cycle

__all__ = ["MessageBufferTB"]

FULL = (1 << LINE_WORDS) - 1


@dataclass
class _Probe:
    """A probe on ``mc_lookup`` or ``ni_read`` until its answer's last word."""
    line: int
    issued: int
    access: object = None           # the core's missed access (mc_lookup)
    held: bool = False              # the model held the line when the probe was taken
    newest: list = None             # the line's last written value then
    outside: list = None            # the line as the caches and memory had it then
    hit: bool = False
    words: list = field(default_factory=list)
    done: Event = field(default_factory=Event)
    beat_cycles: list = field(default_factory=list)   # the edge of each beat taken


class MessageBufferTB(ComponentTB):
    """Drivers on every port of a ``msgbuf`` design, the hierarchy behind them, the scoreboard.

    Parameters
    ----------
    dut : cocotb handle of the ``msgbuf`` top module
    seed : int or str
    hierarchy : MemoryHierarchy, optional
        The core's caches and memory (default: the defaults of :class:`MemoryHierarchy`).
    coh_cycles : int
        Cycles the caches take to answer a coherence request.
    ready_percent : int
        Backpressure on the probe answers and the memory writes (see :mod:`tb.stream`).
    """

    def __init__(self, dut, *, seed, hierarchy=None, coh_cycles=3, ready_percent=100):
        super().__init__(dut, seed=seed)
        self.lines = self.params["lines"]
        self.tx_lines = self.params["tx_lines"]
        self.rx_lines = self.params["rx_lines"]
        self.hierarchy = hierarchy or MemoryHierarchy()
        self.reference = SparseMemory()
        self.model = MessageBufferModel(self.rx_lines)
        self.coh_cycles = coh_cycles
        self.mismatches = []
        self.counts = Counter()
        self.commits = []                   # edges at which fills completed
        self._announcements = deque()       # edges at which announcements were taken
        self.fill_cycles = {"partial": [], "full": []}    # announcement taken to last word
        self._fills = deque()               # announced fills: (line, {word: value})
        self._issued = {"mc": deque(), "ni": deque()}     # probes not taken yet
        self._probes = {"mc": deque(), "ni": deque()}     # taken, not answered yet
        self._probe_taken = set()           # lines whose core miss has had its probe taken
        self._deferred = set()              # coherence requests waiting for such a miss
        self._coherence_requests = []       # taken at this edge
        # Lines allocated for a fill whose coherence request has not been answered: the caches
        # still own them, so a fill that ends meanwhile takes effect as they give the line up.
        self._unasked = set()
        self._filled_unasked = {}           # line -> the fill's words
        self._write_back = []
        self.tx_codec = codec(msgbuf_tx_command_layout(self.lines))
        self.tx_owned = []                  # lines allocated to the sender, in order
        self._tx_expected = deque()
        self.bad_tx_ops = 0
        ports = self.ports

        def backpressured(name, on_receive):
            return ports.sink(dut, name, on_receive=on_receive, ready_percent=ready_percent,
                              rng=random.Random(f"{seed}-{name}"))

        self.rx_line = ports.source(dut, "rx_line", on_accept=self._announced)
        self.rx_data = ports.source(dut, "rx_data", on_accept=self._fill_word)
        self.coh_req = ports.sink(dut, "coh_req", on_receive=self._coherence)
        self.coh_resp = ports.source(dut, "coh_resp")
        self.mc_lookup = ports.source(dut, "mc_lookup", on_accept=self._mc_taken)
        self.mc_data = backpressured("mc_data", self._mc_beat)
        self.ni_read = ports.source(dut, "ni_read", on_accept=self._ni_taken)
        self.ni_data = backpressured("ni_data", self._ni_beat)
        self.mem_write = backpressured("mem_write", self._write_back_beat)
        self.mem_read = ports.sink(dut, "mem_read", on_receive=self._memory_read)
        self.mem_read_data = ports.source(dut, "mem_read_data")
        self.tx_alloc = ports.sink(dut, "tx_alloc", on_receive=self._allocated)
        self.tx_cmd = ports.source(dut, "tx_cmd")
        self.tx_data = ports.sink(dut, "tx_data", on_receive=self._tx_word)
        self.line_codec = codec(msgbuf_line_index_layout(self.lines))
        ports.after_edge(self._order_coherence)
        # rx_next names the next announcement most of the time, else nothing or a wrong line.
        self._hint_rng = random.Random(f"{seed}-rx_next")
        self._hint_codec = codec(RxLineHint)
        self._named = None
        # Driven from the start, as the other inputs are: an undriven hint at the clock edge that
        # ends the reset would leave the tag compare unknown (X) on Icarus, for ever.
        self._hint = self._hint_codec.pack(valid=0, addr=0)
        dut.rx_next.value = self._hint
        ports.after_edge(lambda now: self._name_next())

    def _later(self, cycles, action, *args):
        """Call ``action(*args)`` ``cycles`` clock edges from now."""
        async def wait():
            await ClockCycles(self.dut.clk, cycles)
            action(*args)
        cocotb.start_soon(wait())

    def _mismatch(self, text):
        if text:
            self.mismatches.append(f"cycle {cycle()}: {text}")

    # The RX engine's side -------------------------------------------------------------------

    def fill(self, line, words):
        """Deliver ``words`` ({word index: value}) into physical line ``line``."""
        mask = sum(1 << word for word in words)
        self.rx_line.send([codec(RxLineRequest).pack(addr=line, words=mask)])
        self._name_next()
        order = sorted(words)
        self.rx_data.send([codec(RxFillBeat).pack(word=word, data=words[word],
                                                  last=word == order[-1])
                           for word in order])
        self._fills.append((line, words))

    def _name_next(self):
        """Drive ``rx_next`` as the RX engine does: the announcement after the one shown (with
        none shown, the next), when it is queued, held steady until that changes; one line named
        in ten is named wrongly, one in ten not at all (the buffer must take the lines the same,
        a cycle or two later)."""
        following = self.rx_line.queued(1 if self.rx_line.showing else 0)
        named = (following, self.rx_line.showing, len(self._announcements) + len(self.commits))
        if named == self._named:
            return
        self._named = named
        choice = self._hint_rng.randrange(10)
        if following is None or choice == 0:
            hint = self._hint_codec.pack(valid=0, addr=0)
        else:
            addr = codec(RxLineRequest).field(following, "addr")
            hint = self._hint_codec.pack(valid=1, addr=addr ^ 1 if choice == 1 else addr)
        if hint != self._hint:
            self._hint = hint
            self.dut.rx_next.value = hint

    def _announced(self, payload, offered, accepted):
        line = codec(RxLineRequest).field(payload, "addr")
        if line in self.model:
            self.counts["merges"] += 1       # into a line the buffer holds
        else:
            self._unasked.add(line)
        self.model.announce(line)
        self._announcements.append(accepted)

    def _fill_word(self, payload, offered, accepted):
        if not codec(RxFillBeat).field(payload, "last"):
            return
        line, words = self._fills.popleft()
        if line in self._unasked:
            self._filled_unasked[line] = words
        else:
            self._commit(line, words)
        self.commits.append(accepted)
        self.fill_cycles["partial" if len(words) < LINE_WORDS else "full"].append(
            accepted - self._announcements.popleft())
        self.counts["fills"] += 1
        self.counts["partial_fills" if len(words) < LINE_WORDS else "full_fills"] += 1

    def _commit(self, line, words):
        """The fill of ``line`` takes effect: its words are the line's newest, and the buffer
        holds it (a probe of it hits, once the line is complete)."""
        for word, value in words.items():
            self.reference.write_word(line * LINE_BYTES + word * 8, value)
        self._mismatch(self.model.commit(line))

    # The core caches' side ------------------------------------------------------------------

    def _coherence(self, payload, now):
        # Decided once the edge's probes are in: one taken at the same edge was ordered first.
        self._coherence_requests.append(codec(LineRequest).field(payload, "addr"))

    def _order_coherence(self, now):
        for line in self._coherence_requests:
            if self.hierarchy.pending(line) and line in self._probe_taken:
                self._deferred.add(line)
                self.counts["coherence_deferred"] += 1
            else:
                self._answer_coherence(line)
        self._coherence_requests.clear()

    def _answer_coherence(self, line):
        # The caches give the line up now (a request deferred behind a miss: once the miss is
        # done, which reads the line as it was): a fill that ended before takes effect.
        self._unasked.discard(line)
        if line in self._filled_unasked:
            self._commit(line, self._filled_unasked.pop(line))
        dirty = self.hierarchy.invalidate(line, miss_ordered_after=True)
        if dirty is None:
            beats = [codec(CohResponse).pack(dirty=0, last=1)]
        else:
            self.counts["coherence_dirty"] += 1
            beats = [codec(CohResponse).pack(dirty=1, data=value, last=index == LINE_WORDS - 1)
                     for index, value in enumerate(dirty)]
        self._later(self.coh_cycles, self.coh_resp.send, beats)

    async def access(self, pa, *, write=False, value=None):
        """Perform a core load or store through the hierarchy; return the finished access.

        Takes as many cycles as the access's latency.
        """
        start = cycle()
        access = self.hierarchy.access(pa, write=write, value=value)
        if not access.done:
            probe = _Probe(line=line_of(pa), issued=start, access=access)
            self._issued["mc"].append(probe)
            self.mc_lookup.send([codec(LineRequest).pack(addr=probe.line)])
            await probe.done.wait()
        else:
            self._performed(access)
        self.counts[f"level_{access.level}"] += 1
        remaining = access.cycles - (cycle() - start)
        if remaining > 0:
            await ClockCycles(self.dut.clk, remaining)
        return access

    def _performed(self, access):
        if access.write:
            self.reference.write_word(access.pa, access.value)
            self.counts["stores"] += 1
        else:
            expected = self.reference.read_word(access.pa)
            self.counts["loads"] += 1
            if access.value != expected:
                self.counts["stale_reads"] += 1
                self._mismatch(f"load {access.pa:#x} from {access.level}: {access.value:#x}, "
                               f"expected {expected:#x}")

    def _mc_taken(self, payload, offered, accepted):
        self._probe_taken.add(self._take("mc").line)

    def _take(self, kind):
        """The buffer decides a probe as it takes it: note what it should answer."""
        probe = self._issued[kind].popleft()
        probe.held = probe.line in self.model
        probe.newest = self.reference.read_line(probe.line)
        probe.outside = [self.hierarchy.read_word_coherent(probe.line * LINE_BYTES + 8 * word)
                         for word in range(LINE_WORDS)]
        self._probes[kind].append(probe)
        return probe

    def _beat(self, kind, payload):
        """Collect a probe answer's beat; return the probe when its last word is in."""
        probe = self._probes[kind][0]
        beat = codec(LineBeat).unpack(payload)
        probe.hit = bool(beat["hit"])
        probe.beat_cycles.append(cycle())
        if probe.hit:
            probe.words.append(beat["data"])
        if not beat["last"]:
            return None
        self._probes[kind].popleft()
        if probe.hit != probe.held:
            self._mismatch(f"{kind} probe of line {probe.line:#x}: "
                           f"{'hit' if probe.hit else 'miss'}, but the buffer "
                           f"{'held' if probe.held else 'did not hold'} it")
        if probe.hit:
            self._check_line(f"{kind} probe hit", probe.line, probe.words, probe.newest)
        return probe

    def _mc_beat(self, payload, now):
        probe = self._beat("mc", payload)
        if probe is None:
            return
        if probe.hit:
            self._mismatch(self.model.take(probe.line))
        self.counts["mc_hits" if probe.hit else "mc_misses"] += 1
        # The load's word reaches the L1 with its beat (a miss: with the single beat).
        word = probe.access.pa % LINE_BYTES // 8 if probe.hit else 0
        self.hierarchy.complete(probe.access, probe.words if probe.hit else None,
                                probe.beat_cycles[word] - probe.issued)
        self._performed(probe.access)
        self._probe_taken.discard(probe.line)
        if probe.line in self._deferred:
            self._deferred.discard(probe.line)
            self._answer_coherence(probe.line)
        probe.done.set()

    def _check_line(self, what, line, words, expected=None):
        """Count a stale read unless ``words`` are ``expected`` (default: the newest now)."""
        if expected is None:
            expected = self.reference.read_line(line)
        if words != expected:
            self.counts["stale_reads"] += 1
            self._mismatch(f"{what} of line {line:#x}: {[hex(w) for w in words]}, expected "
                           f"{[hex(w) for w in expected]}")

    # The NI's reads -------------------------------------------------------------------------

    async def ni_read_line(self, line):
        """Read ``line`` as the NI does: from the buffer if it holds it, else coherently from
        the hierarchy. Return the probe."""
        probe = _Probe(line=line, issued=cycle())
        self._issued["ni"].append(probe)
        self.ni_read.send([codec(LineRequest).pack(addr=line)])
        await probe.done.wait()
        return probe

    def _ni_taken(self, payload, offered, accepted):
        self._take("ni")

    def _ni_beat(self, payload, now):
        probe = self._beat("ni", payload)
        if probe is None:
            return
        self.counts["ni_hits" if probe.hit else "ni_misses"] += 1
        if not probe.hit:
            # The NI reads memory now; what counts is where the newest data was at the miss.
            self.hierarchy.dma_read(probe.line)
            self._check_line("NI read missing the buffer", probe.line, probe.outside,
                             probe.newest)
        probe.done.set()

    # Memory ---------------------------------------------------------------------------------

    def _write_back_beat(self, payload, now):
        beat = codec(MemWriteBeat).unpack(payload)
        self._write_back.append(beat["data"])
        if not beat["last"]:
            return
        words, self._write_back = self._write_back, []
        line = beat["addr"]
        self._check_line("write-back", line, words)
        self._mismatch(self.model.write_back(line))
        self.hierarchy.memory_write(line, words)
        self.counts["write_backs"] += 1

    def _memory_read(self, payload, now):
        words = self.hierarchy.memory_read(codec(LineRequest).field(payload, "addr"))
        self.counts["memory_reads"] += 1
        self._later(self.hierarchy.dram_cycles, self.mem_read_data.send,
                    [codec(WordBeat).pack(data=value, last=index == LINE_WORDS - 1)
                     for index, value in enumerate(words)])

    # The sender's staging -------------------------------------------------------------------

    def _allocated(self, payload, now):
        self.tx_owned.append(self.line_codec.field(payload, "line"))
        self.counts["tx_allocations"] += 1

    def tx(self, op, line, word=0, data=0, *, expect=None):
        """Queue a ``tx_cmd`` operation; a READ expects ``expect`` on ``tx_data``."""
        self.tx_cmd.send([self.tx_codec.pack(op=op, line=line, word=word, data=data)])
        self.counts["tx_ops"] += 1
        if op == MsgBufTxOp.READ:
            self._tx_expected.append((line, word, expect))

    def _tx_word(self, payload, now):
        line, word, expected = self._tx_expected.popleft()
        got = codec(WordBeat).unpack(payload)
        self.counts["tx_reads"] += 1
        if (got["data"], got["last"]) != (expected, word == LINE_WORDS - 1):
            self._mismatch(f"TX read of line {line} word {word}: {got['data']:#x} last "
                           f"{got['last']}, expected {expected:#x}")

    async def tx_idle(self):
        """Wait until every queued TX operation has been taken and answered."""
        while len(self.tx_cmd) or self._tx_expected:
            await ClockCycles(self.dut.clk, 4)

    # Results --------------------------------------------------------------------------------

    async def drain(self, timeout_cycles):
        """Wait until every fill, probe, coherence answer and memory read is done."""
        deadline = cycle() + timeout_cycles
        while (self._fills or any(self._issued.values()) or any(self._probes.values())
               or self._deferred or self._filled_unasked or len(self.coh_resp)
               or len(self.mem_read_data) or len(self.tx_cmd) or self._tx_expected):
            if cycle() >= deadline:
                raise AssertionError(
                    f"the message buffer did not finish within {timeout_cycles} cycles: "
                    f"{len(self._fills)} fills, {len(self._probes['mc'])} core probes, "
                    f"{len(self._probes['ni'])} NI reads, {len(self._filled_unasked)} fills "
                    f"whose coherence request is not taken, {len(self._deferred)} coherence "
                    f"requests outstanding")
            await ClockCycles(self.dut.clk, 16)

    async def write_backs_done(self):
        """Wait until the buffer holds no more than ``rx_lines`` lines."""
        while len(self.model) > self.rx_lines:
            await ClockCycles(self.dut.clk, 8)

    def check(self):
        """Fail on every mismatch the scoreboard found."""
        assert not self.mismatches, (f"{len(self.mismatches)} mismatches, first: "
                                     + "; ".join(self.mismatches[:5]))

    def figures(self):
        counts = self.counts
        operations = sum(counts[kind] for kind in ("loads", "stores", "fills", "ni_hits",
                                                   "ni_misses", "tx_ops"))
        return {**self.speed(), "operations": operations, "lines": self.lines,
                "tx_lines": self.tx_lines, "rx_lines": self.rx_lines,
                "counts": dict(sorted(self.counts.items())),
                "hierarchy": dict(self.hierarchy.counters),
                "fill_cycles": {kind: {"mean": round(sum(cycles) / len(cycles), 1),
                                       "max": max(cycles)}
                                for kind, cycles in self.fill_cycles.items() if cycles},
                "held_at_end": len(self.model), "mismatches": len(self.mismatches)}
