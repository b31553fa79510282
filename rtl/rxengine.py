from types import SimpleNamespace

from amaranth import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .framing import LINK_CRC
from .layouts import (COMPLETION_BYTES, COMPLETION_WORDS, ENDPOINT_BITS, FLIT_BYTES,
                      FLIT_DATA_BITS, HEADER_FLITS, LENGTH_BITS, LINE_BYTES, LINE_WORDS,
                      MAX_PAYLOAD_BYTES, NODE_BITS, PAGE_BITS, PA_BITS, RX_COUNTERS, VA_BITS,
                      Completion, CompletionEntry, CompletionStatus, EndpointEntry, Flit,
                      MessageHeader, MessageKind, MissAnswer, NiFault, NiFaultKind, RxFillBeat,
                      RxLineHint, RxLineRequest, TlbResponse, TlbStatus, Trailer,
                      tlb_lookup_layout)
from .params import check_int, check_node, node_number, node_strap
from .translator import RxTranslator

__all__ = ["RxEngine"]

#: Payload words of one message in the staging RAM (the largest message's); the RAM holds two.
STAGING_WORDS = MAX_PAYLOAD_BYTES // FLIT_BYTES
#: The staging RAM holds two largest messages' payloads, as a circular buffer.
_STAGING_DEPTH = 2 * STAGING_WORDS
_STAGING_ADDR_BITS = (_STAGING_DEPTH - 1).bit_length()
#: Flits counted per message before the counter saturates: more than any header's length asks
#: (``HEADER_FLITS`` + 4095 // 8), so a saturated count is always a mismatch.
_FLIT_COUNT_LIMIT = 1023
#: Bits of a byte address below the word, and of a word index below the line.
_WORD_SHIFT = FLIT_BYTES.bit_length() - 1
_LINE_SHIFT = LINE_BYTES.bit_length() - 1
_ENTRY_SHIFT = COMPLETION_BYTES.bit_length() - 1

assert COMPLETION_BYTES & (COMPLETION_BYTES - 1) == 0, "entries must tile a line"
assert COMPLETION_BYTES <= LINE_BYTES, "an entry is written as one partial line"
assert MAX_PAYLOAD_BYTES <= 1 << PAGE_BITS, "a payload spans at most two pages"
assert _STAGING_DEPTH == 1 << _STAGING_ADDR_BITS, "staging addresses wrap around the RAM"

# The counter each fault kind of a discarded message (or a miss) counts in.
_FAULT_COUNTERS = {
    NiFaultKind.BAD_CRC: "bad_crc",
    NiFaultKind.TRUNCATED: "truncated",
    NiFaultKind.BAD_HEADER: "bad_header",
    NiFaultKind.BAD_ENDPOINT: "bad_endpoint",
    NiFaultKind.RX_KEY: "key_faults",
    NiFaultKind.RX_PERMISSION: "permission_faults",
    NiFaultKind.RX_MISS: "misses",
}


class _Part(enum.Enum, shape=2):
    """Which part of a message's writes a side of the writer is at."""
    PAYLOAD = 0     # the payload's lines, from the staging RAM
    ENTRY = 1       # the completion entry, one partial line
    DONE = 2


class _Receive(enum.Enum, shape=3):
    """Where reception is with the message it took last."""
    RECEIVE = 0     # taking flits up to the trailer
    DELIVER = 1     # waiting for the translation of a good message
    FAULT = 2       # reporting a fault
    ANSWER = 3      # waiting for the OS's answer to a miss
    HANDOFF = 4     # waiting for the writer to take the message as its job


class _Write(enum.Enum, shape=2):
    """Where the writer is with its job."""
    IDLE = 0        # no job
    RING = 1        # waiting for space in the job's ring
    WRITE = 2       # writing payload lines and the completion entry


#: Jobs queued for the writer behind the one it is on: enough that short messages arriving while
#: a long one is written keep streaming in.
QUEUED_JOBS = 4
#: Jobs written whose lines the MessageBuffer has not all released yet: enough that the writer
#: goes on with short messages while the earlier ones' last lines make their coherence round trip.
SETTLING_JOBS = 4
#: Bits of the counts of lines announced and released: they differ by less than half the range
#: (the lines of the jobs settling and of the one being written).
_LINE_COUNT_BITS = 10
assert (SETTLING_JOBS + 1) * (MAX_PAYLOAD_BYTES // LINE_BYTES + 2) < 1 << (_LINE_COUNT_BITS - 1)

#: A job written, until its lines are released: what advancing its tail and offering its
#: completion need.
_Settling = data.StructLayout({
    "endpoint": ENDPOINT_BITS,
    "notify":   1,
    "rejected": 1,
    "entry_va": VA_BITS,
    "lines":    _LINE_COUNT_BITS,   # the count of lines announced, its entry's included
})

#: The writer's job: what it needs of a message that passed its checks and translation (or was
#: rejected), kept while reception takes the next messages into the staging RAM.
_Job = data.StructLayout({
    "src_node":     NODE_BITS,
    "src_endpoint": ENDPOINT_BITS,
    "dst_endpoint": ENDPOINT_BITS,
    "notify":       1,
    "rejected":     1,
    "length":       LENGTH_BITS,
    "seq":          16,
    "remote_va":    VA_BITS,
    "metadata":     64,
    "stamp":        64,
    # the endpoint's ring, as the endpoint table had it when the message's first flit came in
    "ring_log2":    4,
    "ring_pa":      PA_BITS,
    "ring_va":      VA_BITS,
    "ppn":          data.ArrayLayout(PA_BITS - PAGE_BITS, 2),
    "base":         _STAGING_ADDR_BITS,     # where its payload starts in the staging RAM
})


class RxEngine(wiring.Component):
    """The receive engine of the NI: checks each arriving message and writes it into memory.

    It follows the "Receiving" section of :mod:`rtl.ni`. One message at a time comes in from
    ``flits``, its payload into a staging RAM while the CRC-32 runs over it; every message is
    taken up to its ``last`` flit, whatever is wrong with it. A message that passes its checks
    and translation (or is rejected) becomes a job of the writer, which writes the jobs out one
    at a time, in arrival order, while the next messages come in: the staging RAM holds two
    largest payloads (2 * :data:`STAGING_WORDS` words, a circular buffer), and up to
    :data:`QUEUED_JOBS` jobs wait behind the one being written.

    **Checks.** The flit with ``last`` is the trailer, whatever the header's length says: the CRC
    is that of every flit before it. Then, in this order (one fault each, the message
    discarded: nothing written, no completion):

    * BAD_CRC: the trailer's ``crc`` is not the CRC of the flits before it (so a message whose
      ``last`` flag was lost, and which ran into the next one, is BAD_CRC);
    * TRUNCATED: the flits before the trailer are not the ``HEADER_FLITS + length // 8`` the
      header asks for (``last`` too early, or none where it should be: the engine took flits up
      to the next ``last``);
    * BAD_HEADER: ``dst_node`` is not ``node``, ``kind`` is not PUT, or ``length`` is not a
      multiple of 8 or above MAX_PAYLOAD_BYTES;
    * BAD_ENDPOINT: ``dst_endpoint`` is ``endpoints`` or above, or its entry is not enabled.

    The endpoint entry (``endpoints``) is read as the message's first flit comes in.

    **Translation.** The pages of ``remote_va .. remote_va + length - 1`` (none, one or two) are
    looked up on ``tlb_request`` as soon as the header's second flit (the VA) is in, in the
    endpoint's ASID with the message's key, so that the answers arrive while the payload does.
    These lookups have no side effect: their answers are only acted on once the message has
    passed the checks above, so a bad message never reports a miss. In page order, the first
    answer that is not HIT decides: RX_PERMISSION or RX_KEY discards the message (fault,
    counted); MISS reports RX_MISS and waits for ``miss_answer``: retry looks every page up
    again; reject reports RX_REJECTED and writes a completion entry with status REJECTED and no
    payload. The low 3 bits of ``remote_va`` are ignored for placement (the payload lands at
    ``remote_va & ~7``); the entry's ``landing_va`` is ``remote_va`` as sent.

    **Writing.** While the endpoint's ring is full (``ring_tail - ring_head`` equals ``2 **
    ring_log2``, mod 2**16) the writer holds the job and every job behind it, counting
    ``count_ring_full_cycles``; reception goes on until the staging RAM or the job queue is
    full, then holds the link. Then the writer writes through the MessageBuffer: each payload
    line is announced on ``rx_line`` (physical line address ``(ppn << 12 | offset) >> 6``, the
    words the message covers in that line), and its words follow on ``rx_data`` in increasing
    word order, ``last`` on the line's final one; announcements run ahead of the words, and a
    line's words are offered only after its announcement has been taken. Then the completion entry
    (:data:`rtl.layouts.CompletionEntry`, ``stamp`` the engine's cycle counter, counted from
    reset, at the cycle the trailer was taken) goes the same way as one partial line at
    ``ring_pa + COMPLETION_BYTES * (tail mod size)`` (``ring_pa`` taken as COMPLETION_BYTES
    aligned). The writer goes on with the next job while the MessageBuffer releases the lines
    (``lines_done``, one per line in announcement order): once it has released the entry's
    line, so that the core reads the payload and the entry and never stale copies, the tail
    advances and, if the header's ``notify`` is set, ``completion`` offers the entry's VA
    (``ring_va`` + the same offset) from that cycle, in arrival order. Up to
    :data:`SETTLING_JOBS` jobs wait so; the tail the next job's entry goes by counts them.

    Faults are reported by reception, in arrival order among themselves; a later message's fault
    may come before an earlier message's completion.

    **Timing.** ``flits`` takes one flit per cycle while a message streams in. It holds a first
    flit while lookups of the message before are still in flight, and the first payload flit
    until the staging RAM has room for the payload the header asks for (at most
    :data:`STAGING_WORDS` words). It takes nothing from the trailer until the message is
    discarded or has become a job: while its translation, fault report or miss answer is
    pending, and while the job queue is full. The writer writes a job of ``n`` payload words in
    ``n + 5`` cycles (a cycle for the first announcement, then the payload's and the entry's
    words one a cycle), so that with ``rx_line``, ``rx_data`` and ``completion`` always ready
    back-to-back 8-byte messages come in at 5 flits per 6 cycles and messages of 2 KiB at 260
    flits per 261. For an 8-byte message whose page hit, with the writer idle, those ports
    always ready and each line released in the cycle after its last word, the payload line is
    announced in the cycle after the trailer's transfer, and ``completion`` is valid from the
    seventh clock edge after it (taken at the eighth).

    Parameters
    ----------
    node : int or None
        This NI's node number, 0 to 15; None: it comes in on the strap port ``node_id``.
    endpoints : int
        Endpoints of the node, 1 to 16.
    asid_bits : int
        Width of the NI TLB's ASIDs, 1 to 16 (the endpoint table's ASID is zero-extended or
        truncated to it).

    Members
    -------
    flits : In(stream.Signature(Flit))
        The link into the node; taken one per cycle while a message streams in (see Timing).
    endpoints : In(EndpointEntry).array(endpoints)
        The NI's endpoint table (registers outside the engine).
    ring_head : In(16).array(endpoints)
        Each endpoint's consumer index, written by user code.
    ring_tail : Out(16).array(endpoints)
        Each endpoint's producer index: advanced by one when a completion entry is written.
    ring_reset : In(endpoints)
        A one-cycle pulse per endpoint: its tail goes to 0 at the clock edge (before an advance
        in the same cycle, which is lost).
    tlb_request : Out(stream.Signature(tlb_lookup_layout(asid_bits)))
        Lookups, driven from a register; at most two per message (a retry repeats them).
    tlb_response : In(stream.Signature(TlbResponse))
        One answer per lookup, in order; always ready.
    fault : Out(stream.Signature(NiFault))
        One per discarded message, per miss (RX_MISS) and per rejection (RX_REJECTED); ``node``
        is the source node, ``endpoint`` the destination endpoint, ``asid`` its ASID (0 for an
        endpoint the NI does not have), ``va`` the page for translation faults (else 0). The
        engine waits while it is not taken.
    miss_answer : In(stream.Signature(MissAnswer))
        Taken only after an RX_MISS fault has been taken, one per miss.
    rx_line : Out(stream.Signature(RxLineRequest))
    rx_data : Out(stream.Signature(RxFillBeat))
        The writes to the MessageBuffer, as above; any backpressure is fine.
    rx_next : Out(RxLineHint)
        The line the next announcement will name, where the engine knows it from its registers
        (the MessageBuffer's "Announcing ahead"): the job's next line while its payload's lines
        are announced, else the first payload line of the next job (queued, or the message coming
        in once the queue is empty). Not ``valid`` when that is an entry's line.
    lines_done : In(1)
        The MessageBuffer's ``rx_done``: high in each cycle it releases a line announced on
        ``rx_line`` (in announcement order): the core reads the line's new words from then on.
    completion : Out(stream.Signature(Completion))
        To the Notifier, once the entry's line is released, for messages with ``notify`` set.
    count_delivered, count_rejected, count_bad_crc, count_truncated, count_bad_header, \
    count_bad_endpoint, count_key_faults, count_permission_faults, count_misses, \
    count_ring_full_cycles : Out(32)
        Counters (wrapping), from :data:`rtl.layouts.RX_COUNTERS`.
    """

    def __init__(self, *, node=0, endpoints=8, asid_bits=8):
        self._node = check_node(self, node, (1 << NODE_BITS) - 1)
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, 16)
        # The parts, built once.
        self._translator = RxTranslator(asid_bits=asid_bits)
        super().__init__({
            "flits": In(stream.Signature(Flit)),
            "endpoints": In(EndpointEntry).array(endpoints),
            "ring_head": In(16).array(endpoints),
            "ring_tail": Out(16).array(endpoints),
            "ring_reset": In(endpoints),
            "tlb_request": Out(stream.Signature(tlb_lookup_layout(asid_bits))),
            "tlb_response": In(stream.Signature(TlbResponse)),
            "fault": Out(stream.Signature(NiFault)),
            "miss_answer": In(stream.Signature(MissAnswer)),
            "rx_line": Out(stream.Signature(RxLineRequest)),
            "rx_next": Out(RxLineHint),
            "rx_data": Out(stream.Signature(RxFillBeat)),
            "lines_done": In(1),
            "completion": Out(stream.Signature(Completion)),
            **{f"count_{name}": Out(32) for name in RX_COUNTERS},
            **node_strap(self._node),
        })

    @property
    def node(self):
        return self._node

    @property
    def endpoint_count(self):
        """The ``endpoints`` parameter (the name ``endpoints`` is the endpoint table's port)."""
        return self._endpoints

    @property
    def asid_bits(self):
        return self._asid_bits

    def elaborate(self, platform):
        m = Module()

        # Submodules: the link CRC, the translator, and the staging RAM, a circular buffer of two
        # largest payloads, so that the next messages stream in while the writer reads out a job's.
        m.submodules.crc = link_crc = LINK_CRC.create()
        m.submodules.translator = translator = self._translator
        wiring.connect(m, translator.tlb_request, wiring.flipped(self.tlb_request))
        wiring.connect(m, wiring.flipped(self.tlb_response), translator.tlb_response)
        m.submodules.staging = staging = Memory(shape=FLIT_DATA_BITS, depth=_STAGING_DEPTH,
                                                init=[])

        # The sections, each in the order a message meets them.
        rx = self._reception(m, link_crc, staging.write_port())
        tlb = self._lookup(m, rx)
        job = self._jobs(m, rx, tlb)
        out = self._write_out(m, job, staging.read_port())
        settling_room = self._settle(m, job, out)
        self._announce_ahead(m, rx, tlb, job, out)
        self._receive_control(m, rx, tlb)
        self._write_control(m, job, out, settling_room)
        return m

    def _reception(self, m, link_crc, staging_write):
        """Take flits, the payload into the staging RAM from ``base`` on: keep the header, the
        endpoint entry and the trailer's cycle, run the CRC, and judge the message on its
        trailer's cycle.

        The payload goes into the staging RAM's free words (``free_words``: those no job of the
        writer holds), as many as the header asks for (at most a largest payload's); ``room``
        says that many are free, and the first payload flit waits until it does.
        :meth:`_receive_control` drives ``flits.ready``, ``rejected`` (set when the OS rejects a
        miss) and ``offering`` (the message is ready to be the writer's job); :meth:`_jobs`
        drives ``free_words`` and ``handoff`` (the message becomes a job at this edge: the next
        one's payload goes after its ``kept_words``)."""
        header = Signal(MessageHeader)
        entry = Signal(EndpointEntry)
        flit_index = Signal(range(_FLIT_COUNT_LIMIT + 1))
        cycle = Signal(64)
        stamp = Signal(64)
        rejected = Signal()
        base = Signal(_STAGING_ADDR_BITS)
        kept_words = Signal(range(STAGING_WORDS + 1))
        offering = Signal()
        handoff = Signal()
        free_words = Signal(range(_STAGING_DEPTH + 1), init=_STAGING_DEPTH)
        flit = self.flits.payload
        taken = Signal()
        trailer = Signal()
        m.d.comb += [
            taken.eq(self.flits.valid & self.flits.ready),
            trailer.eq(taken & flit.last),
        ]

        # The endpoint entry named by the arriving first flit.
        arriving_endpoint = Signal(ENDPOINT_BITS)
        m.d.comb += arriving_endpoint.eq(
            flit.data[MessageHeader["dst_endpoint"].offset:][:ENDPOINT_BITS])
        arriving_entry = self._select(m, "arriving_entry", EndpointEntry, self.endpoints,
                                      arriving_endpoint)

        # Checks on the trailer's cycle: the header registers are complete unless the message is
        # shorter than a header, which then fails the count first.
        payload_words = Signal(range(1 << 9))
        expected_flits = Signal(range(_FLIT_COUNT_LIMIT + 1))
        crc_bad = Signal()
        count_bad = Signal()
        header_bad = Signal()
        endpoint_bad = Signal()
        m.d.comb += [
            payload_words.eq(header.length[_WORD_SHIFT:]),
            expected_flits.eq(HEADER_FLITS + payload_words),
            crc_bad.eq(Trailer(flit.data).crc != link_crc.crc),
            count_bad.eq(flit_index != expected_flits),
            header_bad.eq((header.dst_node != node_number(self)) | (header.kind != MessageKind.PUT)
                          | (header.length[:_WORD_SHIFT] != 0)
                          | (header.length > MAX_PAYLOAD_BYTES)),
            # (every endpoint number is in range when the NI has 16)
            endpoint_bad.eq(((header.dst_endpoint >= self._endpoints)
                             if self._endpoints < 1 << ENDPOINT_BITS else C(0))
                            | ~entry.enabled),
        ]

        # The CRC of every flit before the trailer; the trailer's cycle restarts it, so that a
        # message of a lone ``last`` flit is checked against the CRC of nothing.
        m.d.comb += [
            link_crc.data.eq(flit.data),
            link_crc.valid.eq(taken & ~flit.last),
            link_crc.start.eq(taken & ((flit_index == 0) | flit.last)),
        ]

        # Payload words into the staging RAM, as many as the header asks for (more belong to a
        # message that is TRUNCATED or has a BAD_HEADER anyway, and would overwrite a job's).
        # A rejected message keeps none.
        staging_index = Signal(range(_FLIT_COUNT_LIMIT + 1))
        # (as wide as the counts it is compared with, which Verilator's -Wall asks for)
        needed = Signal(range(_STAGING_DEPTH + 1))
        room = Signal()
        m.d.comb += [
            staging_index.eq(flit_index - HEADER_FLITS),
            needed.eq(Mux(payload_words > STAGING_WORDS, STAGING_WORDS, payload_words)),
            room.eq(needed <= free_words),
            staging_write.addr.eq(base + staging_index[:_STAGING_ADDR_BITS]),
            staging_write.data.eq(flit.data),
            staging_write.en.eq(taken & ~flit.last & (flit_index >= HEADER_FLITS)
                                & (staging_index < needed)),
            kept_words.eq(Mux(rejected, 0, payload_words)),
        ]

        # The message's registers, filled as its flits are taken.
        m.d.sync += cycle.eq(cycle + 1)
        with m.If(taken):
            m.d.sync += flit_index.eq(Mux(flit_index == _FLIT_COUNT_LIMIT, flit_index,
                                          flit_index + 1))
            for index in range(HEADER_FLITS):
                with m.If((flit_index == index) & ~flit.last):
                    m.d.sync += header.as_value().word_select(index, FLIT_DATA_BITS).eq(flit.data)
            with m.If(flit_index == 0):
                m.d.sync += [entry.eq(arriving_entry), rejected.eq(0)]
            with m.If(flit.last):
                m.d.sync += [flit_index.eq(0), stamp.eq(cycle)]
        with m.If(handoff):
            m.d.sync += base.eq(base + kept_words)

        return SimpleNamespace(
            header=header, entry=entry, flit=flit, flit_index=flit_index, taken=taken,
            trailer=trailer, cycle=cycle, stamp=stamp, rejected=rejected, base=base,
            kept_words=kept_words, offering=offering, handoff=handoff, free_words=free_words,
            room=room,
            crc_bad=crc_bad, count_bad=count_bad, header_bad=header_bad,
            endpoint_bad=endpoint_bad)

    def _lookup(self, m, rx):
        """Request the translation of the message coming in from the translator as its VA flit
        comes in; return the translation as it stands this cycle, and the request, which
        :meth:`_receive_control` offers again for a retry."""
        translator = self._translator
        request = translator.request
        translation = translator.translation
        retry = Signal()
        m.d.comb += [
            request.valid.eq((rx.taken & (rx.flit_index == 1) & ~rx.flit.last) | retry),
            request.payload.asid.eq(rx.entry.asid),
            request.payload.key.eq(rx.header.key),
            request.payload.va.eq(Mux(retry, rx.header.remote_va,
                                      rx.flit.data[MessageHeader["remote_va"].offset
                                                   - FLIT_DATA_BITS:])),
            request.payload.length.eq(rx.header.length),
        ]
        return SimpleNamespace(
            idle=request.ready, retry=retry, translated=translation.done,
            refused=translation.status != TlbStatus.HIT, refusal=translation.status,
            refused_va=translation.va, ppn_now=translation.ppn,
            page_va=Cat(C(0, PAGE_BITS), rx.header.remote_va[PAGE_BITS:]))

    def _jobs(self, m, rx, tlb):
        """Queue the messages reception offers for the writer: its ``current`` job (being
        written, or ``held`` for ring space) and up to :data:`QUEUED_JOBS` behind it, and count
        the staging RAM words their payloads do not hold (``rx.free_words``: a job's are taken
        when it is handed over, and each is freed as the writer reads it).

        The writer takes a job at an edge where it is ``free`` (both driven by
        :meth:`_write_control`): the oldest queued, else the one offered, so that a message
        offered to an idle writer starts in the same cycle. Return the queue with the ring of the
        job the writer starts or holds (``starting``)."""
        m.submodules.jobs = queue = SyncFIFO(width=_Job.size, depth=QUEUED_JOBS)
        current = Signal(_Job)
        queued = _Job(queue.r_data)
        offered = Signal(_Job)
        next_job = Signal(_Job)
        starting = Signal(_Job)
        free = Signal(name="writer_free")
        held = Signal(name="writer_held")
        take = Signal(name="writer_take")
        direct = Signal()
        word_read = Signal()
        header = rx.header
        m.d.comb += [
            offered.src_node.eq(header.src_node),
            offered.src_endpoint.eq(header.src_endpoint),
            offered.dst_endpoint.eq(header.dst_endpoint),
            offered.notify.eq(header.notify),
            offered.rejected.eq(rx.rejected),
            offered.length.eq(header.length),
            offered.seq.eq(header.seq),
            offered.remote_va.eq(header.remote_va),
            offered.metadata.eq(header.metadata),
            offered.stamp.eq(Mux(rx.trailer, rx.cycle, rx.stamp)),
            offered.ring_log2.eq(rx.entry.ring_log2),
            offered.ring_pa.eq(rx.entry.ring_pa),
            offered.ring_va.eq(rx.entry.ring_va),
            offered.ppn[0].eq(tlb.ppn_now[0]),
            offered.ppn[1].eq(tlb.ppn_now[1]),
            offered.base.eq(rx.base),
        ]
        # A job offered to a free writer with nothing queued goes to it directly.
        m.d.comb += [
            take.eq(free & (queue.r_rdy | rx.offering)),
            direct.eq(free & ~queue.r_rdy),
            next_job.eq(Mux(queue.r_rdy, queued, offered)),
            starting.eq(Mux(held, current, next_job)),
            rx.handoff.eq(rx.offering & (direct | queue.w_rdy)),
            queue.w_data.eq(offered),
            queue.w_en.eq(rx.handoff & ~direct),
            queue.r_en.eq(take & queue.r_rdy),
        ]
        with m.If(take):
            m.d.sync += current.eq(next_job)
        m.d.sync += rx.free_words.eq(rx.free_words + word_read - Mux(rx.handoff, rx.kept_words, 0))

        # The ring: its size, whether it is full, and the slot the next entry goes to: the tail,
        # counting the entries written whose tail has not advanced yet (see :meth:`_settle`;
        # that of the current job's, if it is written at this edge).
        unsettled = [Signal(range(SETTLING_JOBS + 1), name=f"unsettled{index}")
                     for index in range(self._endpoints)]
        written = Signal(name="writer_written")
        head = self._select(m, "head", 16, self.ring_head, starting.dst_endpoint)
        tail_now = self._select(m, "tail_now", 16, self.ring_tail, starting.dst_endpoint)
        waiting = self._select(m, "tail_unsettled", 16, unsettled, starting.dst_endpoint)
        tail = Signal(16)
        m.d.comb += tail.eq(tail_now + waiting
                            + (written & (current.dst_endpoint == starting.dst_endpoint)))
        ring_size = Signal(16)
        ring_used = Signal(16)
        ring_full = Signal()
        slot = Signal(16)
        slot_pa_offset = Signal(PA_BITS)
        slot_va_offset = Signal(VA_BITS)
        entry_pa = Signal(PA_BITS)
        entry_va = Signal(VA_BITS)
        m.d.comb += [
            ring_size.eq(1 << starting.ring_log2),
            ring_used.eq(tail - head),
            ring_full.eq(ring_used == ring_size),
            slot.eq(tail & (ring_size - 1)),
            slot_pa_offset.eq(slot << _ENTRY_SHIFT),
            slot_va_offset.eq(slot << _ENTRY_SHIFT),
            entry_pa.eq(Cat(C(0, _ENTRY_SHIFT), starting.ring_pa[_ENTRY_SHIFT:])
                        + slot_pa_offset),
            entry_va.eq(starting.ring_va + slot_va_offset),
        ]
        return SimpleNamespace(current=current, starting=starting, queued=queued,
                               queue_ready=queue.r_rdy, free=free, held=held,
                               take=take, unsettled=unsettled, written=written,
                               word_read=word_read, ring_full=ring_full,
                               entry_pa=entry_pa, entry_va=entry_va)

    def _write_out(self, m, job, staging_read):
        """Write the job through the MessageBuffer: one side announces lines, the other sends
        their words, each walking the payload and then the entry.

        Return ``start`` (the statements that start the writer on ``job.starting`` in the slot
        its tail names now), ``line_taken``, ``entry_written`` and ``entry_va``;
        :meth:`_write_control` drives ``writing``."""
        writing = Signal()
        entry_pa_kept = Signal(PA_BITS)
        entry_va_kept = Signal(VA_BITS)
        lines_ahead = Signal(range(2 * MAX_PAYLOAD_BYTES // LINE_BYTES + 4))
        announce = self._announce(m, job.current, writing, entry_pa_kept)
        send = self._send(m, job.current, writing & (lines_ahead != 0), entry_pa_kept, staging_read)
        m.d.sync += lines_ahead.eq(lines_ahead + announce.taken - send.line_done)
        m.d.comb += job.word_read.eq(send.payload_taken)

        # Starting: the payload (unless rejected), then the entry.
        starting = job.starting
        words = Signal(range(STAGING_WORDS + 1), name="start_words")
        first_part = Signal(_Part, name="start_part")
        first_offset = Signal(PAGE_BITS + 1, name="start_offset")
        first_left = Signal(range(STAGING_WORDS + 1), name="start_left")
        m.d.comb += [
            words.eq(Mux(starting.rejected, 0, starting.length[_WORD_SHIFT:])),
            first_part.eq(Mux(words != 0, _Part.PAYLOAD, _Part.ENTRY)),
            first_offset.eq(Mux(words != 0,
                                Cat(C(0, _WORD_SHIFT),
                                    starting.remote_va[_WORD_SHIFT:PAGE_BITS]),
                                job.entry_pa[:PAGE_BITS + 1])),
            first_left.eq(Mux(words != 0, words, COMPLETION_WORDS)),
        ]
        start = [
            entry_pa_kept.eq(job.entry_pa), entry_va_kept.eq(job.entry_va),
            announce.part.eq(first_part), announce.offset.eq(first_offset),
            announce.word.eq(first_offset[_WORD_SHIFT:_LINE_SHIFT]), announce.left.eq(first_left),
            send.part.eq(first_part), send.offset.eq(first_offset), send.left.eq(first_left),
            send.index.eq(0), lines_ahead.eq(0),
        ]

        return SimpleNamespace(writing=writing, start=start, line_taken=announce.taken,
                               announce=announce, entry_written=send.entry_written,
                               entry_va=entry_va_kept)

    def _announce_ahead(self, m, rx, tlb, job, out):
        """Name the line of the next announcement on ``rx_next``, from registers: while a job's
        payload lines are announced, its next line (payload or entry); else the first payload
        line of the next job: the oldest queued, or with none queued (and no job held for ring
        space), the message coming in, from its header and its first page's translation so far
        (counting an answer arriving now; a message that is discarded, or whose translation
        changes, makes the hint wrong, which costs a cycle and nothing else)."""
        announce = out.announce
        hint = self.rx_next
        next_job_valid = Signal(name="hint_next_job")
        next_job_addr = Signal(RxLineHint["addr"].shape, name="hint_next_job_addr")

        def first_line(remote_va, ppn):
            return Cat(remote_va[_LINE_SHIFT:PAGE_BITS], ppn)

        queued = job.queued
        with m.If(job.queue_ready):
            m.d.comb += [next_job_valid.eq(~queued.rejected & (queued.length != 0)),
                         next_job_addr.eq(first_line(queued.remote_va, queued.ppn[0]))]
        with m.Elif(~job.held):
            m.d.comb += [next_job_valid.eq(~rx.rejected & (rx.header.length != 0)),
                         next_job_addr.eq(first_line(rx.header.remote_va, tlb.ppn_now[0]))]
        with m.If(out.writing & (announce.part == _Part.PAYLOAD)):
            m.d.comb += [hint.valid.eq(1), hint.addr.eq(announce.next_addr)]
        with m.Elif(~job.held):
            m.d.comb += [hint.valid.eq(next_job_valid), hint.addr.eq(next_job_addr)]

    def _settle(self, m, job, out):
        """Keep each job written until the MessageBuffer has released its lines (``lines_done``:
        one a cycle, in announcement order); then, in order, advance its ring's tail, count it,
        and offer its completion. Return whether there is room for the record of a job that
        would start now."""
        m.submodules.settling = queue = SyncFIFO(width=_Settling.size, depth=SETTLING_JOBS)
        announced = Signal(_LINE_COUNT_BITS, name="lines_announced")
        done = Signal(_LINE_COUNT_BITS, name="lines_done_count")
        m.d.sync += [announced.eq(announced + out.line_taken),
                     done.eq(done + self.lines_done)]
        record = Signal(_Settling)
        m.d.comb += [
            record.endpoint.eq(job.current.dst_endpoint),
            record.notify.eq(job.current.notify),
            record.rejected.eq(job.current.rejected),
            record.entry_va.eq(out.entry_va),
            # (the entry's announcement was taken before its last word)
            record.lines.eq(announced),
            queue.w_data.eq(record),
            queue.w_en.eq(out.entry_written),
            job.written.eq(out.entry_written),
        ]

        # The oldest record: settled once the released lines reach its count (the difference
        # read as signed). Its tail advances in the first cycle it is settled, and it leaves as
        # its completion is taken (at once if it has none).
        oldest = _Settling(queue.r_data)
        behind = Signal(_LINE_COUNT_BITS)
        settled = Signal(name="settled")
        advanced = Signal(name="settled_advanced")
        advance = Signal(name="settled_advance")
        leaves = Signal(name="settled_leaves")
        m.d.comb += [
            behind.eq(done - oldest.lines),
            settled.eq(queue.r_rdy & ~behind[-1]),
            advance.eq(settled & ~advanced),
            leaves.eq(settled & (~oldest.notify | self.completion.ready)),
            queue.r_en.eq(leaves),
            self.completion.valid.eq(settled & oldest.notify),
            self.completion.payload.endpoint.eq(oldest.endpoint),
            self.completion.payload.entry.eq(oldest.entry_va),
        ]
        m.d.sync += advanced.eq(settled & ~leaves)

        # The ring tails: reset by the NI, advanced by each entry settled; the entries written
        # and not settled, per ring; and the counts.
        for index, (ring_tail, unsettled) in enumerate(zip(self.ring_tail, job.unsettled)):
            with m.If(self.ring_reset[index]):
                m.d.sync += ring_tail.eq(0)
            with m.Elif(advance & (oldest.endpoint == index)):
                m.d.sync += ring_tail.eq(ring_tail + 1)
            m.d.sync += unsettled.eq(unsettled
                                     + (out.entry_written & (record.endpoint == index))
                                     - (advance & (oldest.endpoint == index)))
        with m.If(advance):
            with m.If(oldest.rejected):
                m.d.sync += self.count_rejected.eq(self.count_rejected + 1)
            with m.Else():
                m.d.sync += self.count_delivered.eq(self.count_delivered + 1)
        room = Signal(name="settling_room")
        m.d.comb += room.eq(queue.level + out.entry_written < SETTLING_JOBS)
        return room

    def _announce(self, m, job, writing, entry_pa_kept):
        """Announce the job's lines on ``rx_line``: each line's address and the words the
        message covers in it. ``offset`` is the byte offset from the first page's base (the
        entry's physical address for the entry), ``word`` the line's first word, ``left`` the
        words still to announce."""
        part = Signal(_Part, name="announce_part")
        offset = Signal(PAGE_BITS + 1, name="announce_offset")
        left = Signal(range(STAGING_WORDS + 1), name="announce_left")
        # The line's first word is a register of its own, as wide as the counts it is added to:
        # a slice of the offset would be a narrower operand, which Verilator's -Wall reports.
        word = Signal(range(STAGING_WORDS + 1), name="announce_word")
        reach = Signal(range(STAGING_WORDS + LINE_WORDS), name="announce_reach")
        count = Signal(range(STAGING_WORDS + 1), name="announce_count")
        pa = Signal(PA_BITS, name="announce_pa")
        line = self.rx_line.payload
        m.d.comb += [
            reach.eq(left + word),
            count.eq(Mux(reach >= LINE_WORDS, LINE_WORDS - word, left)),
            pa.eq(Mux(part == _Part.ENTRY, entry_pa_kept,
                      Cat(offset[:PAGE_BITS], Mux(offset[PAGE_BITS], job.ppn[1], job.ppn[0])))),
            line.addr.eq(pa[_LINE_SHIFT:]),
            # (the last word's first test always holds, and is left out as Verilator warns)
            line.words.eq(Cat(((word <= index) if index < LINE_WORDS - 1 else C(1))
                              & (reach > index) for index in range(LINE_WORDS))),
            self.rx_line.valid.eq(writing & (part != _Part.DONE)),
        ]
        # The line after this one: the payload's next, or the entry's.
        next_offset = Signal(PAGE_BITS + 1, name="announce_next_offset")
        next_addr = Signal(RxLineHint["addr"].shape, name="announce_next_addr")
        m.d.comb += [
            next_offset.eq(offset + (count << _WORD_SHIFT)),
            next_addr.eq(Mux(left != count,
                             Cat(next_offset[_LINE_SHIFT:PAGE_BITS],
                                 Mux(next_offset[PAGE_BITS], job.ppn[1], job.ppn[0])),
                             entry_pa_kept[_LINE_SHIFT:])),
        ]
        taken = Signal(name="line_taken")
        m.d.comb += taken.eq(self.rx_line.valid & self.rx_line.ready)
        with m.If(taken):
            with m.If((part == _Part.PAYLOAD) & (left != count)):
                m.d.sync += [offset.eq(offset + (count << _WORD_SHIFT)), word.eq(0),
                             left.eq(left - count)]
            with m.Elif(part == _Part.PAYLOAD):
                m.d.sync += [part.eq(_Part.ENTRY), offset.eq(entry_pa_kept[:PAGE_BITS + 1]),
                             word.eq(entry_pa_kept[_WORD_SHIFT:_LINE_SHIFT]),
                             left.eq(COMPLETION_WORDS)]
            with m.Else():
                m.d.sync += part.eq(_Part.DONE)
        return SimpleNamespace(part=part, offset=offset, word=word, left=left, taken=taken,
                               next_addr=next_addr)

    def _send(self, m, job, sending, entry_pa_kept, staging_read):
        """Send the job's words on ``rx_data`` while ``sending`` (writing, with a line announced
        ahead): payload words from the job's place in the staging RAM, whose read port always
        shows the word at ``index`` (it reads the next one in the cycle a word is taken), then
        the completion entry's words."""
        part = Signal(_Part, name="send_part")
        offset = Signal(PAGE_BITS + 1, name="send_offset")
        left = Signal(range(STAGING_WORDS + 1), name="send_left")
        index = Signal(range(STAGING_WORDS), name="send_index")
        read_index = Signal(range(STAGING_WORDS + 1))
        completion_entry = Signal(CompletionEntry)
        m.d.comb += [
            completion_entry.src_node.eq(job.src_node),
            completion_entry.src_endpoint.eq(job.src_endpoint),
            completion_entry.status.eq(Mux(job.rejected, CompletionStatus.REJECTED,
                                           CompletionStatus.DELIVERED)),
            completion_entry.length.eq(job.length),
            completion_entry.seq.eq(job.seq),
            completion_entry.landing_va.eq(job.remote_va),
            completion_entry.metadata.eq(job.metadata),
            completion_entry.stamp.eq(job.stamp),
        ]
        entry_word = Signal(range(COMPLETION_WORDS))
        entry_data = Signal(FLIT_DATA_BITS)
        m.d.comb += entry_word.eq(offset[_WORD_SHIFT:_ENTRY_SHIFT])
        for word in range(COMPLETION_WORDS):
            with m.If(entry_word == word):
                m.d.comb += entry_data.eq(
                    completion_entry.as_value().word_select(word, FLIT_DATA_BITS))
        beat = self.rx_data.payload
        taken = Signal(name="beat_taken")
        payload_taken = Signal()
        line_done = Signal()
        entry_written = Signal()
        # The word index from its own signal, not from the payload: a payload bit computed from
        # another bit of the same payload is a combinational loop to Verilator (UNOPTFLAT).
        beat_word = Signal(range(LINE_WORDS))
        m.d.comb += [
            beat_word.eq(offset[_WORD_SHIFT:_LINE_SHIFT]),
            beat.word.eq(beat_word),
            beat.data.eq(Mux(part == _Part.ENTRY, entry_data, staging_read.data)),
            beat.last.eq((beat_word == LINE_WORDS - 1) | (left == 1)),
            self.rx_data.valid.eq(sending & (part != _Part.DONE)),
            taken.eq(self.rx_data.valid & self.rx_data.ready),
            payload_taken.eq(taken & (part == _Part.PAYLOAD)),
            line_done.eq(taken & beat.last),
            entry_written.eq(taken & (part == _Part.ENTRY) & (left == 1)),
            read_index.eq(index + payload_taken),
            staging_read.addr.eq(job.base + read_index[:_STAGING_ADDR_BITS]),
        ]
        with m.If(taken):
            m.d.sync += [offset.eq(offset + FLIT_BYTES), left.eq(left - 1)]
            with m.If(payload_taken & (left == 1)):
                m.d.sync += [part.eq(_Part.ENTRY), offset.eq(entry_pa_kept[:PAGE_BITS + 1]),
                             left.eq(COMPLETION_WORDS)]
            with m.Elif(entry_written):
                m.d.sync += part.eq(_Part.DONE)
        with m.If(payload_taken):
            m.d.sync += index.eq(index + 1)
        return SimpleNamespace(part=part, offset=offset, left=left, index=index,
                               payload_taken=payload_taken, line_done=line_done,
                               entry_written=entry_written)

    def _receive_control(self, m, rx, tlb):
        """Lead each message through reception: take it, report a fault, or wait for its
        translation or the OS's answer to a miss; then offer it to the writer's queue, holding
        the link while the queue is full."""
        # (A state register compared in If chains rather than an FSM, whose Verilog case
        # statements Verilator finds incomplete; the same for the writer.)
        state = Signal(_Receive, name="receive_state")
        kind = Signal(NiFaultKind)
        va = Signal(VA_BITS)
        fault_taken = self._faults(m, rx, state == _Receive.FAULT, kind, va)

        def report(fault_kind, fault_va=0):
            m.d.sync += [kind.eq(fault_kind), va.eq(fault_va), state.eq(_Receive.FAULT)]

        def offer():
            m.d.comb += rx.offering.eq(1)
            m.d.sync += state.eq(Mux(rx.handoff, _Receive.RECEIVE, _Receive.HANDOFF))

        def deliver():
            """Act on the translation once it is complete: report a refusal, or offer the
            message to the writer."""
            with m.If(~tlb.translated):
                m.d.sync += state.eq(_Receive.DELIVER)
            with m.Elif(tlb.refused):
                with m.If(tlb.refusal == TlbStatus.MISS):
                    report(NiFaultKind.RX_MISS, tlb.refused_va)
                with m.Elif(tlb.refusal == TlbStatus.PERMISSION_FAULT):
                    report(NiFaultKind.RX_PERMISSION, tlb.refused_va)
                with m.Else():
                    report(NiFaultKind.RX_KEY, tlb.refused_va)
            with m.Else():
                offer()

        with m.If(state == _Receive.RECEIVE):
            with m.If(rx.trailer):
                with m.If(rx.crc_bad):
                    report(NiFaultKind.BAD_CRC)
                with m.Elif(rx.count_bad):
                    report(NiFaultKind.TRUNCATED)
                with m.Elif(rx.header_bad):
                    report(NiFaultKind.BAD_HEADER)
                with m.Elif(rx.endpoint_bad):
                    report(NiFaultKind.BAD_ENDPOINT)
                with m.Else():
                    deliver()
        with m.Elif(state == _Receive.DELIVER):
            deliver()
        with m.Elif(state == _Receive.FAULT):
            with m.If(fault_taken):
                with m.If(kind == NiFaultKind.RX_MISS):
                    m.d.sync += state.eq(_Receive.ANSWER)
                with m.Elif(kind == NiFaultKind.RX_REJECTED):
                    m.d.sync += state.eq(_Receive.HANDOFF)
                with m.Else():
                    m.d.sync += state.eq(_Receive.RECEIVE)
        with m.Elif(state == _Receive.ANSWER):
            with m.If(self.miss_answer.valid):
                with m.If(self.miss_answer.payload.reject):
                    m.d.sync += rx.rejected.eq(1)
                    report(NiFaultKind.RX_REJECTED, tlb.page_va)
                with m.Else():
                    m.d.comb += tlb.retry.eq(1)
                    m.d.sync += state.eq(_Receive.DELIVER)
        with m.Elif(state == _Receive.HANDOFF):
            offer()

        # Outputs of the states: a first flit also waits for the lookups of the message before,
        # the first payload flit for room in the staging RAM.
        m.d.comb += [
            self.flits.ready.eq((state == _Receive.RECEIVE)
                                & Mux(rx.flit_index == 0, tlb.idle,
                                      (rx.flit_index != HEADER_FLITS) | rx.room)),
            self.miss_answer.ready.eq(state == _Receive.ANSWER),
        ]

    def _faults(self, m, rx, reporting, kind, va):
        """Offer the fault of ``kind`` on ``fault`` while ``reporting``, naming the message
        coming in; count it when taken, which is returned."""
        fault = self.fault.payload
        taken = Signal(name="fault_taken")
        m.d.comb += [
            self.fault.valid.eq(reporting),
            fault.kind.eq(kind),
            fault.endpoint.eq(rx.header.dst_endpoint),
            fault.asid.eq(rx.entry.asid),
            fault.va.eq(va),
            fault.node.eq(rx.header.src_node),
            taken.eq(self.fault.valid & self.fault.ready),
        ]
        with m.If(taken):
            for fault_kind, name in _FAULT_COUNTERS.items():
                counter = getattr(self, f"count_{name}")
                with m.If(kind == fault_kind):
                    m.d.sync += counter.eq(counter + 1)
        return taken

    def _write_control(self, m, job, out, settling_room):
        """Lead each job through the writer: wait for space in its ring, write it (for
        :meth:`_settle` to finish); take the next job as the entry's last word is taken (or at
        once when idle), if a record of it will fit in the settling queue."""
        state = Signal(_Write, name="write_state")
        full_wait = Signal()
        m.d.comb += [
            job.free.eq(((state == _Write.IDLE)
                         | ((state == _Write.WRITE) & out.entry_written)) & settling_room),
            job.held.eq(state == _Write.RING),
        ]

        def start_when_space():
            with m.If(job.ring_full):
                m.d.comb += full_wait.eq(1)
                m.d.sync += state.eq(_Write.RING)
            with m.Else():
                m.d.sync += [*out.start, state.eq(_Write.WRITE)]

        with m.If(state == _Write.RING):
            start_when_space()
        with m.Elif(state == _Write.WRITE):
            with m.If(out.entry_written):
                m.d.sync += state.eq(_Write.IDLE)
        with m.If(job.take):
            start_when_space()

        # Outputs of the states.
        m.d.comb += [
            out.writing.eq(state == _Write.WRITE),
        ]
        with m.If(full_wait):
            m.d.sync += self.count_ring_full_cycles.eq(self.count_ring_full_cycles + 1)

    @staticmethod
    def _select(m, name, shape, items, index):
        """Return a signal holding ``items[index]`` (zero when ``index`` is out of range)."""
        result = Signal(shape, name=name)
        for number, item in enumerate(items):
            with m.If(index == number):
                m.d.comb += result.eq(item)
        return result
