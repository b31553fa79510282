from amaranth import *
from amaranth.lib import enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .framing import LINK_CRC
from .layouts import (COMPLETION_BYTES, COMPLETION_WORDS, ENDPOINT_BITS, FLIT_BYTES,
                      FLIT_DATA_BITS, HEADER_FLITS, LINE_BYTES, LINE_WORDS, MAX_PAYLOAD_BYTES,
                      NODE_BITS, PAGE_BITS, PA_BITS, RX_COUNTERS, VA_BITS, Completion,
                      CompletionEntry, CompletionStatus, EndpointEntry, Flit, MessageHeader,
                      MessageKind, MissAnswer, NiFault, NiFaultKind, RxFillBeat, RxLineRequest,
                      TlbResponse, TlbStatus, Trailer, tlb_lookup_layout)
from .params import check_int

__all__ = ["RxEngine"]

#: Payload words the staging RAM holds: the largest message's.
STAGING_WORDS = MAX_PAYLOAD_BYTES // FLIT_BYTES
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


class _State(enum.Enum, shape=3):
    """Where the engine is with the current message."""
    RECEIVE = 0     # taking flits up to the trailer
    DELIVER = 1     # waiting for the translation of a good message
    FAULT = 2       # reporting a fault
    ANSWER = 3      # waiting for the OS's answer to a miss
    RING = 4        # waiting for space in the endpoint's ring
    WRITE = 5       # writing payload lines and the completion entry
    NOTIFY = 6      # offering the completion to the Notifier


class RxEngine(wiring.Component):
    """The receive engine of the NI: checks each arriving message and writes it into memory.

    It follows the "Receiving" section of :mod:`rtl.ni`. One message at a time comes in from
    ``flits`` into a staging RAM of :data:`STAGING_WORDS` words while the CRC-32 runs over it;
    every message is taken up to its ``last`` flit, whatever is wrong with it.

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
    ring_log2``, mod 2**16) the engine holds the message and the link, counting
    ``count_ring_full_cycles``. Then it writes through the MessageBuffer: each payload line is
    announced on ``rx_line`` (physical line address ``(ppn << 12 | offset) >> 6``, the words the
    message covers in that line), and its words follow on ``rx_data`` in increasing word order,
    ``last`` on the line's final one; announcements run ahead of the words, and a line's words
    are offered only after its announcement has been taken. Then the completion entry
    (:data:`rtl.layouts.CompletionEntry`, ``stamp`` the engine's cycle counter, counted from
    reset, at the cycle the trailer was taken) goes the same way as one partial line at
    ``ring_pa + COMPLETION_BYTES * (tail mod size)`` (``ring_pa`` taken as COMPLETION_BYTES
    aligned). When its last word is taken the tail advances and, if the header's ``notify`` is
    set, ``completion`` offers the entry's VA (``ring_va`` + the same offset).

    **Timing.** ``flits`` takes one flit per cycle while a message streams in; it takes nothing
    from the trailer until the message is finished (written, discarded or rejected), and holds
    a first flit while lookups of the message before are still in flight. For an 8-byte message
    whose page hit, with ``rx_line``, ``rx_data`` and ``completion`` always ready, the payload
    line is announced in the cycle after the trailer's transfer, and ``completion`` is valid
    from the sixth clock edge after it (taken at the seventh).

    Parameters
    ----------
    node : int
        This NI's node number, 0 to 15.
    endpoints : int
        Endpoints of the node, 1 to 16.
    asid_bits : int
        Width of the NI TLB's ASIDs, 1 to 16 (the endpoint table's ASID is zero-extended or
        truncated to it).

    Members
    -------
    flits : In(stream.Signature(Flit))
        The link into the node; taken one per cycle while a message streams in.
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
    completion : Out(stream.Signature(Completion))
        To the Notifier, after the entry's last word has been taken, for messages with
        ``notify`` set.
    count_delivered, count_rejected, count_bad_crc, count_truncated, count_bad_header, \
    count_bad_endpoint, count_key_faults, count_permission_faults, count_misses, \
    count_ring_full_cycles : Out(32)
        Counters (wrapping), from :data:`rtl.layouts.RX_COUNTERS`.
    """

    def __init__(self, *, node=0, endpoints=8, asid_bits=8):
        self._node = check_int(self, "node", node, 0, (1 << NODE_BITS) - 1)
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, 16)
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
            "rx_data": Out(stream.Signature(RxFillBeat)),
            "completion": Out(stream.Signature(Completion)),
            **{f"count_{name}": Out(32) for name in RX_COUNTERS},
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

        # Submodules: the link CRC and the staging RAM.
        m.submodules.crc = link_crc = LINK_CRC.create()
        m.submodules.staging = staging = Memory(shape=FLIT_DATA_BITS, depth=STAGING_WORDS,
                                                init=[])
        staging_write = staging.write_port()
        staging_read = staging.read_port()

        # The message: its header, endpoint entry, flit count, and the cycle its trailer came.
        header = Signal(MessageHeader)
        entry = Signal(EndpointEntry)
        flit_index = Signal(range(_FLIT_COUNT_LIMIT + 1))
        cycle = Signal(64)
        stamp = Signal(64)
        rejected = Signal()
        m.d.sync += cycle.eq(cycle + 1)

        flit = self.flits.payload
        flit_taken = Signal()
        m.d.comb += flit_taken.eq(self.flits.valid & self.flits.ready)

        # The endpoint named by the arriving first flit, and by the message's header.
        arriving_endpoint = Signal(ENDPOINT_BITS)
        m.d.comb += arriving_endpoint.eq(
            flit.data[MessageHeader["dst_endpoint"].offset:][:ENDPOINT_BITS])
        arriving_entry = self._select(m, "arriving_entry", EndpointEntry, self.endpoints,
                                      arriving_endpoint)
        head = self._select(m, "head", 16, self.ring_head, header.dst_endpoint)
        tail = self._select(m, "tail", 16, self.ring_tail, header.dst_endpoint)

        # The ring: its size, whether it is full, and the slot the next entry goes to.
        ring_size = Signal(16)
        ring_used = Signal(16)
        ring_full = Signal()
        slot = Signal(16)
        slot_pa_offset = Signal(PA_BITS)
        slot_va_offset = Signal(VA_BITS)
        entry_pa = Signal(PA_BITS)
        entry_va = Signal(VA_BITS)
        m.d.comb += [
            ring_size.eq(1 << entry.ring_log2),
            ring_used.eq(tail - head),
            ring_full.eq(ring_used == ring_size),
            slot.eq(tail & (ring_size - 1)),
            slot_pa_offset.eq(slot << _ENTRY_SHIFT),
            slot_va_offset.eq(slot << _ENTRY_SHIFT),
            entry_pa.eq(Cat(C(0, _ENTRY_SHIFT), entry.ring_pa[_ENTRY_SHIFT:]) + slot_pa_offset),
            entry_va.eq(entry.ring_va + slot_va_offset),
        ]

        # Checks on the trailer's cycle: the header registers are complete unless the message is
        # shorter than a header, which then fails the count first.
        trailer = Trailer(flit.data)
        payload_words = Signal(range(1 << 9))
        expected_flits = Signal(range(_FLIT_COUNT_LIMIT + 1))
        crc_bad = Signal()
        count_bad = Signal()
        header_bad = Signal()
        endpoint_bad = Signal()
        m.d.comb += [
            payload_words.eq(header.length[_WORD_SHIFT:]),
            expected_flits.eq(HEADER_FLITS + payload_words),
            crc_bad.eq(trailer.crc != link_crc.crc),
            count_bad.eq(flit_index != expected_flits),
            header_bad.eq((header.dst_node != self._node) | (header.kind != MessageKind.PUT)
                          | (header.length[:_WORD_SHIFT] != 0)
                          | (header.length > MAX_PAYLOAD_BYTES)),
            # (every endpoint number is in range when the NI has 16)
            endpoint_bad.eq(((header.dst_endpoint >= self._endpoints)
                             if self._endpoints < 1 << ENDPOINT_BITS else C(0))
                            | ~entry.enabled),
        ]

        # Taking flits: the first waits for the lookups of the message before to be answered.
        lookups_idle = Signal()
        receiving = Signal()
        m.d.comb += self.flits.ready.eq(receiving & ((flit_index != 0) | lookups_idle))
        with m.If(flit_taken):
            m.d.sync += flit_index.eq(Mux(flit_index == _FLIT_COUNT_LIMIT, flit_index,
                                          flit_index + 1))
            for index in range(HEADER_FLITS):
                with m.If((flit_index == index) & ~flit.last):
                    m.d.sync += header.as_value().word_select(index, FLIT_DATA_BITS).eq(flit.data)
            with m.If(flit_index == 0):
                m.d.sync += [entry.eq(arriving_entry), rejected.eq(0)]
            with m.If(flit.last):
                m.d.sync += [flit_index.eq(0), stamp.eq(cycle)]

        # The CRC of every flit before the trailer; the trailer's cycle restarts it, so that a
        # message of a lone ``last`` flit is checked against the CRC of nothing.
        m.d.comb += [
            link_crc.data.eq(flit.data),
            link_crc.valid.eq(flit_taken & ~flit.last),
            link_crc.start.eq(flit_taken & ((flit_index == 0) | flit.last)),
        ]

        # Payload words into the staging RAM (words beyond it belong to a message that is
        # TRUNCATED or has a BAD_HEADER anyway).
        staging_index = Signal(range(_FLIT_COUNT_LIMIT + 1))
        m.d.comb += [
            staging_index.eq(flit_index - HEADER_FLITS),
            staging_write.addr.eq(staging_index[:len(staging_write.addr)]),
            staging_write.data.eq(flit.data),
            staging_write.en.eq(flit_taken & ~flit.last & (flit_index >= HEADER_FLITS)
                                & (flit_index < HEADER_FLITS + STAGING_WORDS)),
        ]

        # Lookups: started by the header's VA flit, one request per page, each answer kept.
        lookup = self.tlb_request.payload
        wanted = Signal(range(3))
        issued = Signal(range(3))
        answered = Signal(range(3))
        status = [Signal(TlbStatus, name=f"page{i}_status") for i in range(2)]
        ppn = [Signal(PA_BITS - PAGE_BITS, name=f"page{i}_ppn") for i in range(2)]
        page_va = Signal(VA_BITS)
        arriving_va = Signal(VA_BITS)
        arriving_offset = Signal(PAGE_BITS + 1)
        arriving_pages = Signal(range(3))
        m.d.comb += [
            page_va.eq(Cat(C(0, PAGE_BITS), header.remote_va[PAGE_BITS:])),
            arriving_va.eq(flit.data[MessageHeader["remote_va"].offset - FLIT_DATA_BITS:]),
            arriving_offset.eq(Cat(C(0, _WORD_SHIFT), arriving_va[_WORD_SHIFT:PAGE_BITS])
                               + header.length),
            arriving_pages.eq(Mux(header.length == 0, 0,
                                  Mux(arriving_offset > (1 << PAGE_BITS), 2, 1))),
            lookups_idle.eq((issued == wanted) & (answered == issued)),
            self.tlb_request.valid.eq(issued != wanted),
            self.tlb_response.ready.eq(1),
        ]
        with m.If(flit_taken & (flit_index == 1) & ~flit.last):
            m.d.sync += [
                wanted.eq(arriving_pages), issued.eq(0), answered.eq(0),
                lookup.asid.eq(entry.asid), lookup.key.eq(header.key),
                lookup.va.eq(Cat(C(0, PAGE_BITS), arriving_va[PAGE_BITS:])),
            ]
        with m.If(self.tlb_request.valid & self.tlb_request.ready):
            m.d.sync += [issued.eq(issued + 1), lookup.va.eq(lookup.va + (1 << PAGE_BITS))]
        response = self.tlb_response.payload
        answer_taken = Signal()
        m.d.comb += answer_taken.eq(self.tlb_response.valid)
        with m.If(answer_taken):
            m.d.sync += answered.eq(answered + 1)
            for index in range(2):
                with m.If(answered == index):
                    m.d.sync += [status[index].eq(response.status), ppn[index].eq(response.ppn)]

        # The translation as it stands this cycle, counting an answer arriving now: whether
        # every page is answered, and the first page (in order) that did not hit.
        status_now = [Signal(TlbStatus, name=f"page{i}_status_now") for i in range(2)]
        refused = [Signal(name=f"page{i}_refused") for i in range(2)]
        translated = Signal()
        answered_now = Signal(range(3))
        refusal = Signal(TlbStatus)
        refused_va = Signal(VA_BITS)
        for index in range(2):
            m.d.comb += [
                status_now[index].eq(Mux(answer_taken & (answered == index), response.status,
                                         status[index])),
                refused[index].eq((wanted > index) & (status_now[index] != TlbStatus.HIT)),
            ]
        m.d.comb += [
            answered_now.eq(answered + answer_taken),
            translated.eq((issued == wanted) & (answered_now == wanted)),
            refusal.eq(Mux(refused[0], status_now[0], status_now[1])),
            refused_va.eq(Mux(refused[0], page_va, page_va + (1 << PAGE_BITS))),
        ]

        # The writer: one side announces lines, the other sends their words, each walking the
        # payload and then the entry. ``offset`` is the byte offset from the first page's base
        # (the entry's physical address for the entry), ``left`` the words still to go.
        writing = Signal()
        entry_pa_kept = Signal(PA_BITS)
        entry_va_kept = Signal(VA_BITS)
        announce_part = Signal(_Part)
        announce_offset = Signal(PAGE_BITS + 1)
        announce_left = Signal(range(STAGING_WORDS + 1))
        send_part = Signal(_Part)
        send_offset = Signal(PAGE_BITS + 1)
        send_left = Signal(range(STAGING_WORDS + 1))
        send_index = Signal(range(STAGING_WORDS))
        lines_ahead = Signal(range(2 * MAX_PAYLOAD_BYTES // LINE_BYTES + 4))

        # Announcing: the line's first word, its words in this message, its address.
        # The line's first word is a register of its own, as wide as the counts it is added to:
        # a slice of the offset would be a narrower operand, which Verilator's -Wall reports.
        announce_word = Signal(range(STAGING_WORDS + 1))
        announce_reach = Signal(range(STAGING_WORDS + LINE_WORDS))
        announce_count = Signal(range(STAGING_WORDS + 1))
        announce_pa = Signal(PA_BITS)
        line = self.rx_line.payload
        m.d.comb += [
            announce_reach.eq(announce_left + announce_word),
            announce_count.eq(Mux(announce_reach >= LINE_WORDS, LINE_WORDS - announce_word,
                                  announce_left)),
            announce_pa.eq(Mux(announce_part == _Part.ENTRY, entry_pa_kept,
                               Cat(announce_offset[:PAGE_BITS],
                                   Mux(announce_offset[PAGE_BITS], ppn[1], ppn[0])))),
            line.addr.eq(announce_pa[_LINE_SHIFT:]),
            # (the last word's first test always holds, and is left out as Verilator warns)
            line.words.eq(Cat(((announce_word <= word) if word < LINE_WORDS - 1 else C(1))
                              & (announce_reach > word) for word in range(LINE_WORDS))),
            self.rx_line.valid.eq(writing & (announce_part != _Part.DONE)),
        ]
        line_taken = Signal()
        m.d.comb += line_taken.eq(self.rx_line.valid & self.rx_line.ready)
        with m.If(line_taken):
            with m.If((announce_part == _Part.PAYLOAD) & (announce_left != announce_count)):
                m.d.sync += [announce_offset.eq(announce_offset + (announce_count << _WORD_SHIFT)),
                             announce_word.eq(0),
                             announce_left.eq(announce_left - announce_count)]
            with m.Elif(announce_part == _Part.PAYLOAD):
                m.d.sync += [announce_part.eq(_Part.ENTRY),
                             announce_offset.eq(entry_pa_kept[:PAGE_BITS + 1]),
                             announce_word.eq(entry_pa_kept[_WORD_SHIFT:_LINE_SHIFT]),
                             announce_left.eq(COMPLETION_WORDS)]
            with m.Else():
                m.d.sync += announce_part.eq(_Part.DONE)

        # Sending words: payload words from the staging RAM, whose read port always shows the
        # word at ``send_index`` (it reads the next one in the cycle a word is taken), then the
        # entry's words.
        completion_entry = Signal(CompletionEntry)
        m.d.comb += [
            completion_entry.src_node.eq(header.src_node),
            completion_entry.src_endpoint.eq(header.src_endpoint),
            completion_entry.status.eq(Mux(rejected, CompletionStatus.REJECTED,
                                           CompletionStatus.DELIVERED)),
            completion_entry.length.eq(header.length),
            completion_entry.seq.eq(header.seq),
            completion_entry.landing_va.eq(header.remote_va),
            completion_entry.metadata.eq(header.metadata),
            completion_entry.stamp.eq(stamp),
        ]
        entry_word = Signal(range(COMPLETION_WORDS))
        entry_data = Signal(FLIT_DATA_BITS)
        m.d.comb += [
            entry_word.eq(send_offset[_WORD_SHIFT:_ENTRY_SHIFT]),
        ]
        for index in range(COMPLETION_WORDS):
            with m.If(entry_word == index):
                m.d.comb += entry_data.eq(
                    completion_entry.as_value().word_select(index, FLIT_DATA_BITS))
        beat = self.rx_data.payload
        beat_taken = Signal()
        payload_taken = Signal()
        entry_written = Signal()
        m.d.comb += [
            beat.word.eq(send_offset[_WORD_SHIFT:_LINE_SHIFT]),
            beat.data.eq(Mux(send_part == _Part.ENTRY, entry_data, staging_read.data)),
            beat.last.eq((beat.word == LINE_WORDS - 1) | (send_left == 1)),
            self.rx_data.valid.eq(writing & (send_part != _Part.DONE) & (lines_ahead != 0)),
            beat_taken.eq(self.rx_data.valid & self.rx_data.ready),
            payload_taken.eq(beat_taken & (send_part == _Part.PAYLOAD)),
            entry_written.eq(beat_taken & (send_part == _Part.ENTRY) & (send_left == 1)),
            staging_read.addr.eq(send_index + payload_taken),
        ]
        with m.If(beat_taken):
            m.d.sync += [send_offset.eq(send_offset + FLIT_BYTES), send_left.eq(send_left - 1)]
            with m.If(payload_taken & (send_left == 1)):
                m.d.sync += [send_part.eq(_Part.ENTRY),
                             send_offset.eq(entry_pa_kept[:PAGE_BITS + 1]),
                             send_left.eq(COMPLETION_WORDS)]
            with m.Elif(entry_written):
                m.d.sync += send_part.eq(_Part.DONE)
        with m.If(~writing):
            m.d.sync += send_index.eq(0)
        with m.Elif(payload_taken):
            m.d.sync += send_index.eq(send_index + 1)
        m.d.sync += lines_ahead.eq(lines_ahead + line_taken - (beat_taken & beat.last))

        def start_writing():
            """Return the statements that start the writer on the message (its payload, unless
            rejected, then the entry) in the ring slot the tail names now."""
            words = Signal(range(STAGING_WORDS + 1), name="start_words")
            first_part = Signal(_Part, name="start_part")
            first_offset = Signal(PAGE_BITS + 1, name="start_offset")
            first_left = Signal(range(STAGING_WORDS + 1), name="start_left")
            m.d.comb += [
                words.eq(Mux(rejected, 0, payload_words)),
                first_part.eq(Mux(words != 0, _Part.PAYLOAD, _Part.ENTRY)),
                first_offset.eq(Mux(words != 0,
                                    Cat(C(0, _WORD_SHIFT), header.remote_va[_WORD_SHIFT:PAGE_BITS]),
                                    entry_pa[:PAGE_BITS + 1])),
                first_left.eq(Mux(words != 0, words, COMPLETION_WORDS)),
            ]
            return [
                entry_pa_kept.eq(entry_pa), entry_va_kept.eq(entry_va),
                announce_part.eq(first_part), announce_offset.eq(first_offset),
                announce_word.eq(first_offset[_WORD_SHIFT:_LINE_SHIFT]),
                announce_left.eq(first_left),
                send_part.eq(first_part), send_offset.eq(first_offset), send_left.eq(first_left),
                lines_ahead.eq(0),
            ]
        start = start_writing()

        # The ring tails: reset by the NI, advanced by each entry written.
        for index, ring_tail in enumerate(self.ring_tail):
            with m.If(self.ring_reset[index]):
                m.d.sync += ring_tail.eq(0)
            with m.Elif(entry_written & (header.dst_endpoint == index)):
                m.d.sync += ring_tail.eq(ring_tail + 1)

        # The fault being reported.
        fault_kind = Signal(NiFaultKind)
        fault_va = Signal(VA_BITS)
        reporting = Signal()
        fault = self.fault.payload
        m.d.comb += [
            self.fault.valid.eq(reporting),
            fault.kind.eq(fault_kind),
            fault.endpoint.eq(header.dst_endpoint),
            fault.asid.eq(entry.asid),
            fault.va.eq(fault_va),
            fault.node.eq(header.src_node),
        ]
        fault_taken = Signal()
        m.d.comb += fault_taken.eq(self.fault.valid & self.fault.ready)
        counters = {name: getattr(self, f"count_{name}") for name in RX_COUNTERS}
        with m.If(fault_taken):
            for kind, name in _FAULT_COUNTERS.items():
                with m.If(fault_kind == kind):
                    m.d.sync += counters[name].eq(counters[name] + 1)
        with m.If(entry_written):
            with m.If(rejected):
                m.d.sync += counters["rejected"].eq(counters["rejected"] + 1)
            with m.Else():
                m.d.sync += counters["delivered"].eq(counters["delivered"] + 1)

        # The message's course (a state register compared in If chains rather than an FSM, whose
        # Verilog case statements Verilator finds incomplete).
        state = Signal(_State)
        full_wait = Signal()

        def report(kind, va=0):
            m.d.sync += [fault_kind.eq(kind), fault_va.eq(va), state.eq(_State.FAULT)]

        def deliver():
            """Act on the translation once it is complete: report a refusal, wait for ring space,
            or start writing."""
            with m.If(~translated):
                m.d.sync += state.eq(_State.DELIVER)
            with m.Elif(refused[0] | refused[1]):
                with m.If(refusal == TlbStatus.MISS):
                    report(NiFaultKind.RX_MISS, refused_va)
                with m.Elif(refusal == TlbStatus.PERMISSION_FAULT):
                    report(NiFaultKind.RX_PERMISSION, refused_va)
                with m.Else():
                    report(NiFaultKind.RX_KEY, refused_va)
            with m.Elif(ring_full):
                m.d.comb += full_wait.eq(1)
                m.d.sync += state.eq(_State.RING)
            with m.Else():
                m.d.sync += [*start, state.eq(_State.WRITE)]

        with m.If(state == _State.RECEIVE):
            with m.If(flit_taken & flit.last):
                with m.If(crc_bad):
                    report(NiFaultKind.BAD_CRC)
                with m.Elif(count_bad):
                    report(NiFaultKind.TRUNCATED)
                with m.Elif(header_bad):
                    report(NiFaultKind.BAD_HEADER)
                with m.Elif(endpoint_bad):
                    report(NiFaultKind.BAD_ENDPOINT)
                with m.Else():
                    deliver()
        with m.Elif(state == _State.DELIVER):
            deliver()
        with m.Elif(state == _State.FAULT):
            with m.If(fault_taken):
                with m.If(fault_kind == NiFaultKind.RX_MISS):
                    m.d.sync += state.eq(_State.ANSWER)
                with m.Elif(fault_kind == NiFaultKind.RX_REJECTED):
                    m.d.sync += state.eq(_State.RING)
                with m.Else():
                    m.d.sync += state.eq(_State.RECEIVE)
        with m.Elif(state == _State.ANSWER):
            with m.If(self.miss_answer.valid):
                with m.If(self.miss_answer.payload.reject):
                    m.d.sync += rejected.eq(1)
                    report(NiFaultKind.RX_REJECTED, page_va)
                with m.Else():
                    m.d.sync += [issued.eq(0), answered.eq(0), lookup.va.eq(page_va),
                                 state.eq(_State.DELIVER)]
        with m.Elif(state == _State.RING):
            with m.If(ring_full):
                m.d.comb += full_wait.eq(1)
            with m.Else():
                m.d.sync += [*start, state.eq(_State.WRITE)]
        with m.Elif(state == _State.WRITE):
            with m.If(entry_written):
                m.d.sync += state.eq(Mux(header.notify, _State.NOTIFY, _State.RECEIVE))
        with m.Elif(state == _State.NOTIFY):
            with m.If(self.completion.ready):
                m.d.sync += state.eq(_State.RECEIVE)

        # Outputs of the states.
        m.d.comb += [
            receiving.eq(state == _State.RECEIVE),
            reporting.eq(state == _State.FAULT),
            writing.eq(state == _State.WRITE),
            self.miss_answer.ready.eq(state == _State.ANSWER),
            self.completion.valid.eq(state == _State.NOTIFY),
            self.completion.payload.endpoint.eq(header.dst_endpoint),
            self.completion.payload.entry.eq(entry_va_kept),
        ]
        with m.If(full_wait):
            m.d.sync += counters["ring_full_cycles"].eq(counters["ring_full_cycles"] + 1)
        return m

    @staticmethod
    def _select(m, name, shape, items, index):
        """Return a signal holding ``items[index]`` (zero when ``index`` is out of range)."""
        result = Signal(shape, name=name)
        for number, item in enumerate(items):
            with m.If(index == number):
                m.d.comb += result.eq(item)
        return result
