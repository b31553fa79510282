"""Proof harness of the TX engine's isolation (:class:`rtl.txengine.TxEngine`), bounded (bmc).

:class:`TxProof` wraps a TX engine whose inputs are free within the NI's rules: any slot writes
and doorbells (in any ASID, to any endpoint that is not busy: the NI refuses the others), any
TLB answers (each after its lookup), any answer of the OS to a miss, the MessageBuffer's probe
answers (a miss beat or a hit line of 8 words, any data, any latency) and memory's lines (8
words each, any data, any latency), any backpressure. The harness records the ASID each
endpoint's doorbell gave, and, for the send in progress, the ASIDs its lookups used and the
frames its current round of lookups was given (a retry after a miss starts a new round).

Properties:

* ``lookup-in-doorbell-asid``: every TLB lookup of a send is in the ASID of the doorbell that
  started it. Which endpoint a send serves shows when it ends (its STATUS.busy falls), so the
  ASIDs of its lookups are checked then.
* ``dma-reads-translated-frames``: every DMA line probed in the MessageBuffer (``ni_read``) or
  read from memory (``dma_read``) lies in a frame the TLB answered HIT to a lookup of the
  current round of the send in progress.

Together: DMA reads only pages translated in the doorbell's ASID. The engine holds two slot RAMs,
a prefetch FIFO and a framer, so the proof is a bounded model check from reset. At depth 9 it
covers a DMA send refused on its translation (its lookup checked as it ends, at the 7th step);
at depth 12 also a DMA send translated and its first line read from memory (the cover run
``send-ended-after-lookup``, ``line-read-from-memory`` shows both).

Every descriptor is free, DMA sends without payload included: for those the engine once probed
and read a line at whatever PPN its translation registers held (reset, or another send's, maybe
another ASID's), as it counted the words in front of an unaligned ``local_va`` as a line to read;
this proof found it (rtl/txengine.py now touches no line for no words).
"""

from amaranth import *
from amaranth.hdl import Assume
from amaranth.hdl._ast import AnySeq
from amaranth.lib import wiring

from rtl.layouts import LINE_BYTES, LINE_WORDS, PAGE_BITS, PPN_BITS, TlbStatus
from rtl.txengine import TxEngine

from .formal_sby import Properties, drive_freely

__all__ = ["TxProof", "TxFixedASID", "TX_PARAMS"]

#: The engine the proof is about: two endpoints, so that one's ASID can be taken for the other's.
TX_PARAMS = dict(node=0, nodes=2, endpoints=2, send_buffering=1, asid_bits=2)

_LINE_SHIFT = LINE_BYTES.bit_length() - 1
_LINES_PER_PAGE_BITS = PAGE_BITS - _LINE_SHIFT


class TxFixedASID(TxEngine):
    """A deliberately broken TX engine whose DMA lookups are all in ASID 0."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.tlb_request.payload.asid.eq(0)
        return m


class TxProof(wiring.Component):
    """Proof harness around a TX engine of ``engine_class`` (:class:`~rtl.txengine.TxEngine` or
    a variant) with :data:`TX_PARAMS`."""

    def __init__(self, engine_class=TxEngine):
        self._engine = engine_class(**TX_PARAMS)
        self.properties = Properties()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        engine = self._engine
        m.submodules.engine = engine
        drive_freely(m, engine, keep=(("slot_write", "valid"), ("doorbell", "valid"),
                                      ("tlb_response", "valid"), ("ni_data",), ("dma_data",)))
        m.d.comb += Assume(~ResetSignal())
        busy = Cat(status.busy for status in engine.status)
        self._writes_and_doorbells(m, engine, busy)
        self._memory(m, engine)
        self._lookups(m, engine, busy)
        return m

    @staticmethod
    def _busy(busy, endpoint):
        """Return whether ``endpoint`` is busy (an endpoint the engine lacks is not)."""
        return Cat(busy, C(0, (1 << len(endpoint)) - len(busy))).bit_select(endpoint, 1)

    def _writes_and_doorbells(self, m, engine, busy):
        """Slot writes and doorbells at any time, but not to a busy endpoint."""
        for port in (engine.slot_write, engine.doorbell):
            m.d.comb += port.valid.eq(AnySeq(1) & ~self._busy(busy, port.payload.endpoint))

    @staticmethod
    def _memory(m, engine):
        """Answer each probe with a miss beat or a hit line, each memory read with a line."""
        probe, answer = engine.ni_read, engine.ni_data
        probes = Signal(range(4))
        probe_beat = Signal(range(LINE_WORDS))
        probe_hit = Signal()
        hit = Signal()
        m.d.comb += [
            answer.valid.eq(AnySeq(1) & (probes != 0)),
            hit.eq(Mux(probe_beat == 0, AnySeq(1), probe_hit)),
            answer.payload.hit.eq(hit),
            answer.payload.last.eq(~hit | (probe_beat == LINE_WORDS - 1)),
            answer.payload.data.eq(AnySeq(len(answer.payload.data))),
        ]
        answered = answer.valid & answer.ready
        m.d.sync += probes.eq(probes + (probe.valid & probe.ready)
                              - (answered & answer.payload.last))
        with m.If(answered):
            m.d.sync += [probe_hit.eq(hit),
                         probe_beat.eq(Mux(answer.payload.last, 0, probe_beat + 1))]

        read, line = engine.dma_read, engine.dma_data
        reads = Signal(range(8))
        word = Signal(range(LINE_WORDS))
        m.d.comb += [
            line.valid.eq(AnySeq(1) & (reads != 0)),
            line.payload.last.eq(word == LINE_WORDS - 1),
            line.payload.data.eq(AnySeq(len(line.payload.data))),
        ]
        arrived = line.valid & line.ready
        m.d.sync += reads.eq(reads + (read.valid & read.ready) - (arrived & line.payload.last))
        with m.If(arrived):
            m.d.sync += word.eq(word + 1)

    def _lookups(self, m, engine, busy):
        """Check the lookups of each send against its doorbell, and its reads against the
        frames its lookups were given."""
        check = self.properties.check
        request, response = engine.tlb_request, engine.tlb_response
        asked = request.valid & request.ready
        answer = response.valid & response.ready
        outstanding = Signal(range(4))
        m.d.comb += response.valid.eq(AnySeq(1) & (outstanding != 0))
        m.d.sync += outstanding.eq(outstanding + asked - answer)

        # The ASID of each endpoint's last doorbell.
        doorbell = engine.doorbell
        asids = [Signal(engine.asid_bits, name=f"doorbell{i}_asid") for i in range(len(busy))]
        for number, asid in enumerate(asids):
            with m.If(doorbell.valid & doorbell.ready & (doorbell.payload.endpoint == number)):
                m.d.sync += asid.eq(doorbell.payload.asid)

        # The ASIDs looked up in since the last send ended (one bit per ASID).
        used = Signal(1 << engine.asid_bits)
        was_busy = Signal(len(busy))
        ended = Signal(len(busy))
        m.d.sync += was_busy.eq(busy)
        m.d.comb += ended.eq(was_busy & ~busy)
        with m.If(asked):
            m.d.sync += used.eq(used | (C(1, 1) << request.payload.asid))
        for number, asid in enumerate(asids):
            with m.If(ended[number]):
                check(m, "lookup-in-doorbell-asid", (used & ~(C(1, 1) << asid)) == 0)
        with m.If(ended.any()):
            m.d.sync += used.eq(0)
        self.properties.cover(m, "send-ended-after-lookup", ended.any() & (used != 0))

        # The frames the current round of lookups was given.
        answered = Signal(range(3))
        frames = [Signal(PPN_BITS, name=f"round_frame{i}") for i in range(2)]
        given = Signal(2)
        with m.If(answer):
            m.d.sync += answered.eq(answered + 1)
            for number, frame in enumerate(frames):
                with m.If(answered == number):
                    m.d.sync += [frame.eq(response.payload.ppn),
                                 given[number].eq(response.payload.status == TlbStatus.HIT)]
        miss = engine.miss_answer
        with m.If(ended.any() | (miss.valid & miss.ready & ~miss.payload.reject)):
            m.d.sync += [answered.eq(0), given.eq(0)]
        self.properties.cover(m, "line-read-from-memory", engine.dma_read.valid
                              & engine.dma_read.ready)
        for port in (engine.ni_read, engine.dma_read):
            frame = port.payload.addr[_LINES_PER_PAGE_BITS:]
            with m.If(port.valid & port.ready):
                check(m, "dma-reads-translated-frames",
                      (given[0] & (frame == frames[0])) | (given[1] & (frame == frames[1])))
