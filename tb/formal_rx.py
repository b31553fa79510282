"""Proof harness of the RX engine's isolation (:class:`rtl.rxengine.RxEngine`), bounded (bmc).

:class:`RxProof` wraps an RX engine whose every input is free: any flits (so any header, any
length, any CRC, ``last`` anywhere), any endpoint table, any TLB answers (each after its lookup),
any answer of the OS to a miss, any backpressure on every output, every cycle. Beside it runs
the harness's own reading of the receive rules of :mod:`rtl.ni`, which follows each message from
its flits: its header, the endpoint table's entry for it as its first flit came in, its CRC, its
pages, and the TLB's answers to its lookups. The
harness judges each message by those rules (BAD_CRC, TRUNCATED, BAD_HEADER, BAD_ENDPOINT, then
the translation: the first page that is not HIT decides; a miss waits for the OS, whose retry
looks up again and whose reject writes a completion without payload) and keeps the messages it
accepts, in order, with the frames their pages were given, until their writes are over.

Properties:

* ``crc-of-message-flits``: the engine's CRC unit (``amaranth.lib.crc``, trusted as a library
  block; a CRC of the harness's own would leave the solver to prove two CRC circuits equal,
  which it does not do in reasonable time) is fed each flit before the trailer, from a fresh
  start at the first flit, and nothing else; the harness compares the trailer with its result.
* ``lookup-in-endpoint-asid``, ``lookup-with-message-key``, ``lookup-of-message-pages``: every
  TLB lookup is for the message coming in, in the ASID of the endpoint its header names (as the
  table had it when its first flit came in), with its key, for its pages in order, no more. (A
  message to an endpoint the NI does not have may be looked up in any ASID: it is discarded,
  and a lookup changes nothing.)
* ``writes-only-accepted-messages``: a line is announced on ``rx_line`` only while a message
  the harness accepted is unwritten, so nothing of a discarded message (CRC mismatch, truncated,
  bad header or endpoint, permission or key refused) is ever written.
* ``writes-only-translated-frames``: each payload line of an accepted message is written at
  the frame the TLB answered HIT for that page of that message, at the line's place in the page;
  a rejected message writes no payload line.
* ``words-only-into-announced-lines``: a word goes out on ``rx_data`` only into a line
  announced and not yet finished.

The completion entry's line is not checked: its address is the endpoint's ring, from the
endpoint table, not a translation. The engine holds a staging RAM of two largest payloads, a
job queue, a CRC and 64-bit counters, too much state for induction to close without many
lemmas: the proof is a bounded model check from reset. At depth 12 it covers an 8-byte message
taken, translated and written in full (announced the cycle after its trailer, its completion
entry's last word at the 10th step); deeper runs cover messages behind it.
"""

from types import SimpleNamespace

from amaranth import *
from amaranth.hdl import Assume
from amaranth.hdl._ast import AnySeq
from amaranth.lib import data, wiring

from rtl.layouts import (FLIT_BYTES, FLIT_DATA_BITS, HEADER_FLITS, LINE_BYTES, LINE_WORDS,
                         MAX_PAYLOAD_BYTES, PAGE_BITS, PPN_BITS, VA_BITS, MessageHeader,
                         MessageKind, TlbStatus, Trailer)
from rtl.rxengine import QUEUED_JOBS, RxEngine

from .formal_sby import Properties, drive_freely

__all__ = ["RxProof", "RxEndpointZeroASID", "RxIgnoresKey", "RxIgnoresCRC", "RX_PARAMS"]

#: The engine the proof is about: two endpoints, so that one's ASID can be taken for the other's.
RX_PARAMS = dict(node=0, endpoints=2, asid_bits=2)

_WORD_SHIFT = FLIT_BYTES.bit_length() - 1
_LINE_SHIFT = LINE_BYTES.bit_length() - 1
_LINES_PER_PAGE_BITS = PAGE_BITS - _LINE_SHIFT
#: Most lines a payload touches: up to 7 words in front of it in its first line.
_MAX_LINES = (LINE_WORDS - 1 + MAX_PAYLOAD_BYTES // FLIT_BYTES + LINE_WORDS - 1) // LINE_WORDS
#: Messages the harness may hold accepted and unwritten: the engine's job being written, its
#: queue, and the message offered to it.
_CAPACITY = QUEUED_JOBS + 2

#: An accepted message as the harness keeps it until its lines have been announced.
_Accepted = data.StructLayout({
    "rejected":   1,
    "lines":      range(_MAX_LINES + 1),
    "first_line": _LINES_PER_PAGE_BITS,         # the payload's first line in its page
    "ppn":        data.ArrayLayout(PPN_BITS, 2),
})


class RxEndpointZeroASID(RxEngine):
    """A deliberately broken RX engine that looks every message up in endpoint 0's ASID."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.tlb_request.payload.asid.eq(self.endpoints[0].asid)
        return m


class RxIgnoresKey(RxEngine):
    """A deliberately broken RX engine that looks every message up with key 0."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.tlb_request.payload.key.eq(0)
        return m


class RxIgnoresCRC(RxEngine):
    """A deliberately broken RX engine that never finds a CRC mismatch: its receiver sees every
    trailer carry the CRC it computed."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        flit = self.receiver.flits.payload
        with m.If(flit.last):
            m.d.comb += Trailer(flit.data).crc.eq(self.receiver.link_crc.crc)
        return m


def _header_view(flit_data, index):
    """Return ``flit_data`` as flit ``index`` of a :data:`rtl.layouts.MessageHeader` view."""
    below = FLIT_DATA_BITS * index
    return MessageHeader(Cat(C(0, below), flit_data,
                             C(0, MessageHeader.size - below - FLIT_DATA_BITS)))


class RxProof(wiring.Component):
    """Proof harness around an RX engine of ``engine_class`` (:class:`~rtl.rxengine.RxEngine`
    or a variant) with :data:`RX_PARAMS`."""

    def __init__(self, engine_class=RxEngine):
        self._engine = engine_class(**RX_PARAMS)
        self.properties = Properties()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        engine = self._engine
        m.submodules.engine = engine

        # Inputs: anything, every cycle, but a TLB answer only to a lookup; no reset.
        drive_freely(m, engine, keep=(("tlb_response", "valid"),))
        m.d.comb += Assume(~ResetSignal())

        message = self._message(m, engine)
        translation = self._translation(m, engine, message)
        accepted = self._judge(m, engine, message, translation)
        self._writes(m, engine, accepted)
        return m

    def _message(self, m, engine):
        """Follow the message coming in: its flits, header, endpoint entry, CRC and verdict on
        its trailer's cycle (every check but the translation)."""
        flits = engine.flits
        flit = flits.payload
        taken = Signal()
        m.d.comb += taken.eq(flits.valid & flits.ready)
        index = Signal(range(1024))         # flits of the message taken so far (saturating)
        header = Signal(MessageHeader)
        asid = Signal(engine.asid_bits)
        known = Signal()
        enabled = Signal()
        with m.If(taken):
            m.d.sync += index.eq(Mux(flit.last, 0, Mux(index == 1023, index, index + 1)))
            for number in range(HEADER_FLITS):
                with m.If((index == number) & ~flit.last):
                    m.d.sync += header.as_value().word_select(number, FLIT_DATA_BITS).eq(
                        flit.data)
        # The endpoint entry as the first flit comes in (an endpoint the NI lacks: disabled).
        arriving = _header_view(flit.data, 0).dst_endpoint
        with m.If(taken & (index == 0)):
            m.d.sync += [known.eq(arriving < len(engine.endpoints)), enabled.eq(0)]
            for number, entry in enumerate(engine.endpoints):
                with m.If(arriving == number):
                    m.d.sync += [asid.eq(entry.asid), enabled.eq(entry.enabled)]

        # The CRC-32 of every flit before the trailer: the engine's CRC unit (a library
        # block) must see each of them, from a fresh start at the first flit, and nothing else
        # (it may start over while a first flit is awaited, never within a message).
        link_crc = engine.receiver.link_crc
        check = self.properties.check
        check(m, "crc-of-message-flits", link_crc.valid == (taken & ~flit.last))
        check(m, "crc-of-message-flits", ~link_crc.valid | (link_crc.data == flit.data))
        check(m, "crc-of-message-flits", ~(taken & (index == 0)) | link_crc.start)
        check(m, "crc-of-message-flits", ~link_crc.start | (index == 0))

        # The verdict on the trailer's cycle.
        good = Signal()
        m.d.comb += good.eq(
            (Trailer(flit.data).crc == link_crc.crc)
            & (index == HEADER_FLITS + header.length[_WORD_SHIFT:])
            & (header.dst_node == engine.node) & (header.kind == MessageKind.PUT)
            & (header.length[:_WORD_SHIFT] == 0) & (header.length <= MAX_PAYLOAD_BYTES)
            & enabled)
        return SimpleNamespace(flit=flit, taken=taken, index=index, header=header, asid=asid,
                               known=known, trailer=taken & flit.last, good=good)

    def _translation(self, m, engine, message):
        """Check each lookup against the message coming in; keep the answers to its current
        round of lookups (a retry starts a new one) and decide it as the engine should."""
        check = self.properties.check
        request, response = engine.tlb_request, engine.tlb_response
        asked = Signal()
        answer = Signal()
        outstanding = Signal(range(4))
        m.d.comb += [
            asked.eq(request.valid & request.ready),
            answer.eq(response.valid & response.ready),
            response.valid.eq(AnySeq(1) & (outstanding != 0)),
        ]
        m.d.sync += outstanding.eq(outstanding + asked - answer)

        # The message's pages, from its VA flit: those of remote_va & ~7 .. + length - 1.
        pages = Signal(range(3))
        page = Signal(VA_BITS - PAGE_BITS)
        first_word = Signal(_LINE_SHIFT - _WORD_SHIFT)
        first_line = Signal(_LINES_PER_PAGE_BITS)
        requested = Signal(range(3))
        answered = Signal(range(3))
        status = [Signal(TlbStatus, name=f"page{i}_status") for i in range(2)]
        ppn = [Signal(PPN_BITS, name=f"page{i}_ppn") for i in range(2)]
        length = message.header.length
        va = _header_view(message.flit.data, 1).remote_va
        end = Cat(C(0, _WORD_SHIFT), va[_WORD_SHIFT:PAGE_BITS]) + length
        with m.If(message.taken & (message.index == 1) & ~message.flit.last):
            m.d.sync += [
                pages.eq(Mux(length == 0, 0, Mux(end > (1 << PAGE_BITS), 2, 1))),
                page.eq(va[PAGE_BITS:]),
                first_word.eq(va[_WORD_SHIFT:_LINE_SHIFT]),
                first_line.eq(va[_LINE_SHIFT:PAGE_BITS]),
                requested.eq(0), answered.eq(0),
            ]
        retry = Signal()
        miss = engine.miss_answer
        m.d.comb += retry.eq(miss.valid & miss.ready & ~miss.payload.reject)
        with m.If(retry):
            m.d.sync += [requested.eq(0), answered.eq(0)]

        # Every lookup: the message's endpoint ASID, key and next page.
        with m.If(asked):
            check(m, "lookup-in-endpoint-asid",
                  ~message.known | (request.payload.asid == message.asid))
            check(m, "lookup-with-message-key", request.payload.key == message.header.key)
            check(m, "lookup-of-message-pages", (requested < pages) & (
                request.payload.va == Cat(C(0, PAGE_BITS), (page + requested)[:len(page)])))
            m.d.sync += requested.eq(requested + 1)
        with m.If(answer):
            m.d.sync += answered.eq(answered + 1)
            for number in range(2):
                with m.If(answered == number):
                    m.d.sync += [status[number].eq(response.payload.status),
                                 ppn[number].eq(response.payload.ppn)]

        # The round as it stands this cycle, counting an answer arriving now.
        status_now = [Signal(TlbStatus, name=f"page{i}_status_now") for i in range(2)]
        ppn_now = [Signal(PPN_BITS, name=f"page{i}_ppn_now") for i in range(2)]
        refused = Signal(2)
        for number in range(2):
            arriving = answer & (answered == number)
            m.d.comb += [
                status_now[number].eq(Mux(arriving, response.payload.status, status[number])),
                ppn_now[number].eq(Mux(arriving, response.payload.ppn, ppn[number])),
                refused[number].eq((pages > number) & (status_now[number] != TlbStatus.HIT)),
            ]
        done = Signal()
        m.d.comb += done.eq(answered + answer == pages)
        return SimpleNamespace(
            done=done, refused=refused.any(), retry=retry,
            refusal=Mux(refused[0], status_now[0], status_now[1]), ppn=ppn_now,
            first_word=first_word, first_line=first_line)

    def _judge(self, m, engine, message, translation):
        """Return the messages accepted, in order, as the harness's queue (``slots``, ``count``)
        with ``pop`` to be driven when the oldest has been written."""
        check = self.properties.check
        miss = engine.miss_answer
        pending = Signal()      # the trailer passed its checks; the translation is undecided
        deciding, accept, discard, reject = Signal(), Signal(), Signal(), Signal()
        t = translation
        m.d.comb += [
            deciding.eq((message.trailer & message.good) | pending),
            accept.eq(deciding & t.done & ~t.refused),
            discard.eq(deciding & t.done & t.refused & (t.refusal != TlbStatus.MISS)),
            reject.eq(pending & miss.valid & miss.ready & miss.payload.reject),
        ]
        with m.If(message.trailer):
            m.d.sync += pending.eq(message.good)
        with m.If(accept | discard | reject):
            m.d.sync += pending.eq(0)

        # What is written of an accepted message: its payload lines (none if rejected) at its
        # frames, then its completion entry.
        words = message.header.length[_WORD_SHIFT:]
        new = Signal(_Accepted)
        m.d.comb += [
            new.rejected.eq(reject),
            new.lines.eq(Mux(reject | (words == 0), 0, (t.first_word + words + LINE_WORDS - 1)
                             >> (_LINE_SHIFT - _WORD_SHIFT))),
            new.first_line.eq(t.first_line),
            new.ppn[0].eq(t.ppn[0]),
            new.ppn[1].eq(t.ppn[1]),
        ]
        slots = [Signal(_Accepted, name=f"accepted{i}") for i in range(_CAPACITY)]
        count = Signal(range(_CAPACITY + 1))
        push, pop = Signal(), Signal()
        m.d.comb += push.eq(accept | reject)
        m.d.sync += count.eq(count + push - pop)
        check(m, "harness-queue-bound", ~push | (count - pop < _CAPACITY))
        for number, slot in enumerate(slots):
            behind = slots[number + 1] if number + 1 < _CAPACITY else slot
            with m.If(push & (count - pop == number)):
                m.d.sync += slot.eq(new)
            with m.Elif(pop):
                m.d.sync += slot.eq(behind)
        return SimpleNamespace(head=slots[0], count=count, pop=pop)

    def _writes(self, m, engine, accepted):
        """Match every line announced with the oldest accepted message, and every word with an
        announced line."""
        check = self.properties.check
        line, beat = engine.rx_line, engine.rx_data
        head = accepted.head
        line_taken = Signal()
        m.d.comb += line_taken.eq(line.valid & line.ready)
        announced = Signal(range(_MAX_LINES + 1))      # lines of the oldest announced so far
        check(m, "writes-only-accepted-messages", ~line.valid | (accepted.count != 0))
        with m.If(line.valid & (accepted.count != 0) & (announced != head.lines)):
            in_page = Signal(_LINES_PER_PAGE_BITS + 1)
            m.d.comb += in_page.eq(head.first_line + announced)
            frame = Mux(in_page[_LINES_PER_PAGE_BITS], head.ppn[1], head.ppn[0])
            check(m, "writes-only-translated-frames",
                  line.payload.addr == Cat(in_page[:_LINES_PER_PAGE_BITS], frame))
        with m.If(line_taken & (accepted.count != 0)):
            # The line after the payload's is the completion entry's: the message is written.
            with m.If(announced == head.lines):
                m.d.comb += accepted.pop.eq(1)
                m.d.sync += announced.eq(0)
            with m.Else():
                m.d.sync += announced.eq(announced + 1)

        # A witness for the depth: a message with a payload written to its completion entry.
        written = Signal()
        with m.If(accepted.pop & (head.lines != 0)):
            m.d.sync += written.eq(1)
        self.properties.cover(m, "message-with-payload-written",
                              written & (engine.count_delivered != 0))

        open_lines = Signal(range(4 * _MAX_LINES))
        m.d.sync += open_lines.eq(open_lines + line_taken
                                  - (beat.valid & beat.ready & beat.payload.last))
        check(m, "words-only-into-announced-lines", ~beat.valid | (open_lines != 0))
