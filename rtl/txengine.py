from amaranth import *
from amaranth.lib import enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arbiter import RoundRobinArbiter
from .framing import MessageFramer
from .layouts import (ENDPOINT_BITS, FLIT_BYTES, FLIT_DATA_BITS, LINE_ADDR_BITS,
                      LINE_BYTES, LINE_WORDS, MAX_NODES, MAX_PAYLOAD_BYTES, NODE_BITS, PAGE_BITS,
                      PPN_BITS, TX_COUNTERS, VA_BITS, Doorbell, Flit, LineBeat, LineRequest,
                      MessageKind, MissAnswer, NiFault, NiFaultKind, SendDescriptor, SendFlags,
                      TlbResponse, TlbStatus, TxError, TxSlotWrite, TxStatus, WordBeat,
                      tlb_lookup_layout)
from .params import check_int, check_node, node_number, node_strap

__all__ = ["TxEngine"]

#: Payload words a TX slot holds: the largest message's.
SLOT_WORDS = MAX_PAYLOAD_BYTES // FLIT_BYTES
#: Most lines a DMA payload touches: up to 7 words before it in its first line.
MAX_LINES = (LINE_WORDS - 1 + SLOT_WORDS + LINE_WORDS - 1) // LINE_WORDS
#: Bits of a byte address below the word, below the line, and of a line index in its page.
_WORD_SHIFT = FLIT_BYTES.bit_length() - 1
_LINE_SHIFT = LINE_BYTES.bit_length() - 1
_LINES_PER_PAGE_BITS = PAGE_BITS - _LINE_SHIFT
_PAGE_WORDS = 1 << (PAGE_BITS - _WORD_SHIFT)

assert MAX_PAYLOAD_BYTES <= 1 << PAGE_BITS, "a payload spans at most two pages"
assert SLOT_WORDS <= 1 << TxSlotWrite["word"].width, "a slot word index fits its field"
assert LINE_ADDR_BITS == PPN_BITS + _LINES_PER_PAGE_BITS


class _Step(enum.Enum, shape=4):
    """Where the engine is with the current send."""
    IDLE = 0            # waiting for a doorbelled endpoint; reads its descriptor when picked
    CHECK = 1           # checking the descriptor; a PIO header goes to the framer from here
    TLB_REQUEST = 2     # DMA: offering the lookup of a page
    TLB_WAIT = 3        # DMA: waiting for its answer
    FAULT = 4           # offering a TX_MISS or TX_PERMISSION fault
    ANSWER = 5          # waiting for the OS's answer to a miss
    PREFETCH = 6        # DMA: fetching; the header waits for the first payload word
    SEND = 7            # the framer sends; fetching goes on
    DRAIN = 8           # the trailer has gone; the last DMA line's other words still come


class TxEngine(wiring.Component):
    """The send engine of the NI: takes doorbelled TX slots and puts their messages on the link.

    It follows the "Sending" section of :mod:`rtl.ni`, one message at a time.

    **Storage.** Each endpoint's TX slot is a descriptor and a payload. The payloads are one
    :class:`~amaranth.lib.memory.Memory` of ``endpoints * 256`` words of 64 bits (slot ``e``,
    word ``i`` at ``e * 256 + i``), read a word per cycle for PIO. The descriptors are a second
    Memory of ``endpoints`` entries of 256 bits, written a 64-bit word at a time (write
    granularity 64): one read yields a whole descriptor the cycle after the arbiter picks the
    endpoint, and the read port's output register, read only when a send starts, holds that
    descriptor for the whole send, so the engine keeps no copy of it (4 x 64 flip-flops saved
    against registers, and no four-cycle gather against a 64-bit-wide RAM).

    **Scheduling.** Doorbelled (``busy``) endpoints are taken in round-robin order
    (:class:`rtl.arbiter.RoundRobinArbiter`). The descriptor is checked, in this order:
    BAD_LENGTH (length not a multiple of 8 or above MAX_PAYLOAD_BYTES), BAD_NODE (``dst_node``
    not below ``nodes``), BAD_FLAGS (a flag other than DMA and NOTIFY). A refused send sends
    nothing: STATUS shows busy low and the error, ``count_refused`` counts it.

    **DMA translation.** For a DMA send with a payload, the page of ``local_va`` and, if the
    payload runs into the next page, that page are looked up on ``tlb_request`` (one at a time,
    in the doorbell's ASID) before the header is offered. HIT keeps the PPN; MISS reports a
    TX_MISS fault (``va`` the page's VA) and waits for ``miss_answer``: retry looks every page
    up again, reject refuses the send with DMA_REJECTED; any other answer (PERMISSION_FAULT;
    KEY_FAULT cannot come, as TX lookups carry no key) reports a TX_PERMISSION fault and refuses
    the send with DMA_FAULT. The low three bits of ``local_va``
    are ignored (the payload is read from ``local_va & ~7``).

    **DMA fetch and the prefetch FIFO.** The payload's words reach the framer through a prefetch
    FIFO of ``send_buffering * 8`` words inside this engine (a
    :class:`~amaranth.lib.fifo.SyncFIFOBuffered`, submodule ``prefetch``; PIO words pass through
    it too). A line is asked for only when the FIFO has room for all 8 of its words beside every
    word already asked for and not yet sent, so the fetch runs at most ``send_buffering`` lines
    ahead of the wire and the FIFO never refuses a word. Lines are fetched in order. Each is
    probed in the MessageBuffer (``ni_read``, one probe offered at a time, the next one offered
    while the answer to the one before streams in); a miss is then read from memory
    (``dma_read``), several lines outstanding. Words of a buffered line (a hit) are taken only
    once every line asked from memory before it has arrived, so words reach the FIFO in order
    (the MessageBuffer's line reader waits meanwhile, for at most the memory's latency; so a
    payload whose lines alternate between buffer and memory pays that latency once per pair,
    58 % of the link for 2 KiB at 10 cycles, against 100 % for all-memory or all-buffered). The
    words of the first and last line that the payload does not cover are dropped. The physical
    line of payload word ``i`` is ``(ppn << 12 | (local_va + 8 i) & 0xfff) >> 6``, with the PPN
    of the page that word is in. The header of a DMA send is offered once the first payload word
    is in the FIFO, so that the memory's latency is not a gap in the middle of a message, which
    would hold the Fabric's wormhole path idle.

    **Framing.** The header (``src_node`` this node, ``src_endpoint`` the sending endpoint,
    ``seq`` a counter per destination node from 0, ``notify`` the NOTIFY flag, ``kind`` PUT, the
    rest from the descriptor), the payload and the CRC-32 trailer go out through a
    :class:`rtl.framing.MessageFramer`. When the trailer is taken: STATUS busy low, error NONE,
    ``sent`` one more, and the destination's ``seq`` has advanced (it does so when the header
    is taken; refused sends take no sequence number).

    **Timing.** With ``flits`` always ready and the engine idle, a PIO send's first flit is
    taken at the 3rd clock edge after the doorbell's transfer (arbitrate and read the
    descriptor, check and hand the header to the framer, send), and a PIO message streams at one
    flit per cycle. A DMA message of 2 KiB from a memory answering 10 cycles after a read
    streams at one flit per cycle with ``send_buffering`` 4; its first flit leaves 24 cycles
    after the doorbell (12 when the lines are buffered). The next send is picked in the cycle
    after the trailer, or, for DMA, once the last line's words after the payload have arrived.

    Parameters
    ----------
    node : int or None
        This NI's node number (the header's ``src_node``), 0 to 15; None: it comes in on the
        strap port ``node_id``.
    nodes : int
        Nodes in the system, 2 to 16: a destination at or above is BAD_NODE.
    endpoints : int
        Endpoints (TX slots), 1 to 16.
    send_buffering : int
        DMA lines fetched ahead of the wire, 1 to 16: the prefetch FIFO holds
        ``send_buffering * 8`` words.
    asid_bits : int
        Width of the NI TLB's ASIDs, 1 to 16 (the doorbell's ASID is zero-extended or truncated
        to it).

    Members
    -------
    slot_write : In(stream.Signature(TxSlotWrite))
        Always ready; writes descriptor word ``word`` (0 to 3, ``descriptor`` set) or payload
        word ``word`` of the endpoint's TX slot at the clock edge of the transfer. Writes to an
        endpoint the engine does not have, or to a descriptor word above 3, are ignored. The NI
        must not write the slot of a busy endpoint.
    doorbell : In(stream.Signature(Doorbell))
        Always ready; sets the endpoint's STATUS.busy (and error NONE) and records the ASID at
        the clock edge of the transfer. The NI must not ring a busy endpoint.
    status : Out(TxStatus).array(endpoints)
        Each endpoint's STATUS register (busy, error, sent), registered.
    tlb_request : Out(stream.Signature(tlb_lookup_layout(asid_bits)))
        The NI TLB's TX port, driven from registers (``key`` is 0); one lookup outstanding.
    tlb_response : In(stream.Signature(TlbResponse))
        One answer per lookup, in order; ready while a lookup is outstanding.
    fault : Out(stream.Signature(NiFault))
        TX_MISS (then the engine waits for ``miss_answer``) or TX_PERMISSION, with the sending
        endpoint, its ASID, the page's VA and this node; held until taken.
    miss_answer : In(stream.Signature(MissAnswer))
        Ready only after a TX_MISS fault has been taken, for one answer.
    ni_read : Out(stream.Signature(LineRequest))
        Probes of the MessageBuffer, from a register, one per DMA line, in line order.
    ni_data : In(stream.Signature(LineBeat))
        The probes' answers in order: a miss beat is taken when ``dma_read`` has room, the words
        of a hit once the lines before it have come from memory.
    dma_read : Out(stream.Signature(LineRequest))
        Reads of lines the MessageBuffer does not hold, from a register, in line order; at most
        ``send_buffering`` outstanding.
    dma_data : In(stream.Signature(WordBeat))
        Always ready: 8 words per line asked for, in order, ``last`` on the 8th. Any latency,
        any number of requests outstanding.
    flits : Out(stream.Signature(Flit))
        The link; any backpressure.
    count_sent, count_refused, count_dma_lines, count_misses : Out(32)
        Counters (wrapping), from :data:`rtl.layouts.TX_COUNTERS`: sends completed, sends
        refused, DMA lines probed, TX_MISS faults reported.
    """

    def __init__(self, *, node=0, nodes=2, endpoints=8, send_buffering=4, asid_bits=8):
        self._node = check_node(self, node, MAX_NODES - 1)
        self._nodes = check_int(self, "nodes", nodes, 2, MAX_NODES)
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        self._send_buffering = check_int(self, "send_buffering", send_buffering, 1, 16)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, 16)
        super().__init__({
            "slot_write": In(stream.Signature(TxSlotWrite)),
            "doorbell": In(stream.Signature(Doorbell)),
            "status": Out(TxStatus).array(endpoints),
            "tlb_request": Out(stream.Signature(tlb_lookup_layout(asid_bits))),
            "tlb_response": In(stream.Signature(TlbResponse)),
            "fault": Out(stream.Signature(NiFault)),
            "miss_answer": In(stream.Signature(MissAnswer)),
            "ni_read": Out(stream.Signature(LineRequest)),
            "ni_data": In(stream.Signature(LineBeat)),
            "dma_read": Out(stream.Signature(LineRequest)),
            "dma_data": In(stream.Signature(WordBeat)),
            "flits": Out(stream.Signature(Flit)),
            **{f"count_{name}": Out(32) for name in TX_COUNTERS},
            **node_strap(self._node),
        })

    @property
    def node(self):
        return self._node

    @property
    def nodes(self):
        return self._nodes

    @property
    def endpoints(self):
        return self._endpoints

    @property
    def send_buffering(self):
        return self._send_buffering

    @property
    def asid_bits(self):
        return self._asid_bits

    def elaborate(self, platform):
        m = Module()
        endpoints = self._endpoints

        # Submodules: the framer, the endpoint arbiter, the prefetch FIFO and the slot RAMs.
        m.submodules.framer = framer = MessageFramer()
        # (the arbiter needs two requesters; a lone endpoint leaves the second one idle)
        m.submodules.arbiter = arbiter = RoundRobinArbiter(count=max(2, endpoints))
        m.submodules.prefetch = prefetch = SyncFIFOBuffered(
            width=FLIT_DATA_BITS, depth=self._send_buffering * LINE_WORDS)
        m.submodules.descriptors = descriptors = Memory(
            shape=SendDescriptor.size, depth=max(2, endpoints), init=[])
        m.submodules.payloads = payloads = Memory(
            shape=FLIT_DATA_BITS, depth=endpoints * SLOT_WORDS, init=[])
        wiring.connect(m, framer.flits, wiring.flipped(self.flits))

        # The endpoints' registers: STATUS and the doorbell's ASID.
        status = [Signal(TxStatus, name=f"status{i}") for i in range(endpoints)]
        asids = [Signal(self._asid_bits, name=f"asid{i}") for i in range(endpoints)]
        for index in range(endpoints):
            m.d.comb += self.status[index].eq(status[index])
        m.d.comb += arbiter.requests.eq(Cat(entry.busy for entry in status))

        # The send in progress: its endpoint, ASID and descriptor (the descriptor RAM's read
        # register, read when the send is picked).
        current = Signal(range(max(2, endpoints)))
        asid = Signal(self._asid_bits)
        descriptor_read = descriptors.read_port()
        desc = Signal(SendDescriptor)
        m.d.comb += desc.eq(descriptor_read.data)

        self._slot_writes(m, descriptors.write_port(granularity=FLIT_DATA_BITS),
                          payloads.write_port())
        facts = self._descriptor_facts(m, desc)
        self._schedule(m, arbiter, framer, prefetch, descriptor_read, payloads.read_port(),
                       status, asids, current, asid, desc, facts)
        return m

    def _slot_writes(self, m, descriptor_write, payload_write):
        """Write TX slot words as the MMIO decoder hands them over."""
        write = self.slot_write.payload
        known = Signal()
        endpoint_bits = (self._endpoints - 1).bit_length()
        # (every endpoint number is known when the engine has 16)
        m.d.comb += [
            self.slot_write.ready.eq(1),
            known.eq((write.endpoint < self._endpoints)
                     if self._endpoints < 1 << ENDPOINT_BITS else C(1)),
            descriptor_write.addr.eq(write.endpoint),
            descriptor_write.data.eq(write.data.replicate(len(descriptor_write.en))),
            descriptor_write.en.eq(Mux(self.slot_write.valid & known & write.descriptor
                                       & (write.word < len(descriptor_write.en)),
                                       1 << write.word[:2], 0)),
            payload_write.addr.eq(Cat(write.word, write.endpoint[:endpoint_bits])),
            payload_write.data.eq(write.data),
            payload_write.en.eq(self.slot_write.valid & known & ~write.descriptor),
        ]

    def _descriptor_facts(self, m, desc):
        """Return what the engine derives from the descriptor, as named signals."""
        facts = {
            "error": Signal(TxError),
            "dma": Signal(),
            "words": Signal(range(1 << (len(desc.length) - _WORD_SHIFT))),
            "first_word": Signal(_LINE_SHIFT - _WORD_SHIFT),
            "lines": Signal(range(MAX_LINES + 1)),
            "two_pages": Signal(),
            "translate": Signal(),
            "page_va": [Signal(VA_BITS, name=f"page{i}_va") for i in range(2)],
            "first_line": Signal(_LINES_PER_PAGE_BITS),
        }
        # (arithmetic on operands of one width, or of one bit, which Verilator lints clean)
        line_words = Signal(_LINE_SHIFT - _WORD_SHIFT + 1)
        page_word = Signal(PAGE_BITS - _WORD_SHIFT)
        page_end = Signal(range(_PAGE_WORDS + (1 << (len(desc.length) - _WORD_SHIFT))))
        bad_length, bad_node, bad_flags = Signal(), Signal(), Signal()
        m.d.comb += [
            bad_length.eq((desc.length[:_WORD_SHIFT] != 0) | (desc.length > MAX_PAYLOAD_BYTES)),
            # (every destination is in the system when it has 16 nodes)
            bad_node.eq((desc.dst_node >= self._nodes)
                        if self._nodes < 1 << NODE_BITS else C(0)),
            bad_flags.eq((desc.flags & ~(SendFlags.DMA | SendFlags.NOTIFY).value) != 0),
            facts["dma"].eq((desc.flags & SendFlags.DMA.value) != 0),
            facts["words"].eq(desc.length[_WORD_SHIFT:]),
            facts["first_word"].eq(desc.local_va[_WORD_SHIFT:_LINE_SHIFT]),
            # Lines touched, from the first word's line to the last word's (none for no words):
            # the whole lines of the length, and one or two more for the words in front of the
            # payload in its first line plus the length's odd words.
            line_words.eq(facts["first_word"] + facts["words"][:_LINE_SHIFT - _WORD_SHIFT]),
            facts["lines"].eq(Mux(facts["words"] == 0, 0,
                                  facts["words"][_LINE_SHIFT - _WORD_SHIFT:] + (line_words != 0)
                                  + (line_words > LINE_WORDS))),
            page_word.eq(desc.local_va[_WORD_SHIFT:PAGE_BITS]),
            page_end.eq(page_word + facts["words"]),
            facts["two_pages"].eq(page_end > _PAGE_WORDS),
            facts["translate"].eq(facts["dma"] & (facts["words"] != 0)),
            facts["first_line"].eq(desc.local_va[_LINE_SHIFT:PAGE_BITS]),
            facts["page_va"][0].eq(Cat(C(0, PAGE_BITS), desc.local_va[PAGE_BITS:])),
            facts["page_va"][1].eq(Cat(C(0, PAGE_BITS), desc.local_va[PAGE_BITS:] + 1)),
        ]
        m.d.comb += facts["error"].eq(Mux(bad_length, TxError.BAD_LENGTH,
                                          Mux(bad_node, TxError.BAD_NODE,
                                              Mux(bad_flags, TxError.BAD_FLAGS, TxError.NONE))))
        return facts

    def _schedule(self, m, arbiter, framer, prefetch, descriptor_read, payload_read, status,
                  asids, current, asid, desc, facts):
        """Pick a send, check it, translate its pages, and see it through the framer."""
        # Translation state: the page looked up, the PPNs found, the fault reported.
        page = Signal()
        ppn = [Signal(PPN_BITS, name=f"page{i}_ppn") for i in range(2)]
        # (registers of their own: the ports' other fields are driven combinationally)
        lookup_va, fault_va = Signal(VA_BITS), Signal(VA_BITS)
        fault_kind = Signal(NiFaultKind)
        answer = self.tlb_response.payload
        seq = [Signal(16, name=f"seq{i}") for i in range(self._nodes)]

        header_taken, trailer_sent = Signal(), Signal()
        m.d.comb += [
            header_taken.eq(framer.header.valid & framer.header.ready),
            trailer_sent.eq(self.flits.valid & self.flits.ready & self.flits.payload.last),
        ]
        drained = Signal()

        # The step, and one flag per step (If chains rather than an FSM's case statements, so
        # that the Verilog has no case that leaves out values of the state register).
        step = Signal(_Step)
        at = {name: Signal(name=f"at_{name.lower()}") for name in _Step.__members__}
        for name, flag in at.items():
            m.d.comb += flag.eq(step == _Step[name])
        with m.If(at["IDLE"]):
            with m.If(arbiter.valid):
                m.d.sync += [current.eq(arbiter.grant), step.eq(_Step.CHECK)]
                for index, endpoint_asid in enumerate(asids):
                    with m.If(arbiter.grant == index):
                        m.d.sync += asid.eq(endpoint_asid)
        with m.Elif(at["CHECK"]):
            m.d.sync += [page.eq(0), lookup_va.eq(facts["page_va"][0])]
            with m.If(facts["error"] != TxError.NONE):
                m.d.sync += step.eq(_Step.IDLE)
            with m.Elif(facts["translate"]):
                m.d.sync += step.eq(_Step.TLB_REQUEST)
            with m.Elif(header_taken):
                m.d.sync += step.eq(_Step.SEND)
        with m.Elif(at["TLB_REQUEST"]):
            with m.If(self.tlb_request.ready):
                m.d.sync += step.eq(_Step.TLB_WAIT)
        with m.Elif(at["TLB_WAIT"]):
            with m.If(self.tlb_response.valid):
                m.d.sync += [fault_va.eq(lookup_va),
                             fault_kind.eq(Mux(answer.status == TlbStatus.MISS,
                                               NiFaultKind.TX_MISS, NiFaultKind.TX_PERMISSION))]
                with m.If(answer.status == TlbStatus.HIT):
                    with m.If(page):
                        m.d.sync += ppn[1].eq(answer.ppn)
                    with m.Else():
                        m.d.sync += ppn[0].eq(answer.ppn)
                    with m.If(page | ~facts["two_pages"]):
                        m.d.sync += step.eq(_Step.PREFETCH)
                    with m.Else():
                        m.d.sync += [page.eq(1), lookup_va.eq(facts["page_va"][1]),
                                     step.eq(_Step.TLB_REQUEST)]
                with m.Else():
                    m.d.sync += step.eq(_Step.FAULT)
        with m.Elif(at["FAULT"]):
            with m.If(self.fault.ready):
                m.d.sync += step.eq(Mux(fault_kind == NiFaultKind.TX_MISS, _Step.ANSWER,
                                        _Step.IDLE))
        with m.Elif(at["ANSWER"]):
            # Retry: every page again (a fill may have replaced the first page's entry too).
            with m.If(self.miss_answer.valid):
                m.d.sync += [page.eq(0), lookup_va.eq(facts["page_va"][0]),
                             step.eq(Mux(self.miss_answer.payload.reject, _Step.IDLE,
                                         _Step.TLB_REQUEST))]
        with m.Elif(at["PREFETCH"]):
            with m.If(header_taken):
                m.d.sync += step.eq(_Step.SEND)
        with m.Elif(at["SEND"]):
            # The trailer has gone; stray words of the last DMA line may still be on their way.
            with m.If(trailer_sent):
                m.d.sync += step.eq(Mux(drained, _Step.IDLE, _Step.DRAIN))
        with m.Elif(at["DRAIN"]):
            with m.If(drained):
                m.d.sync += step.eq(_Step.IDLE)

        # The ports each step drives.
        checked = Signal()
        m.d.comb += [
            checked.eq(at["CHECK"] & (facts["error"] == TxError.NONE)),
            arbiter.advance.eq(at["IDLE"]),
            descriptor_read.addr.eq(arbiter.grant),
            descriptor_read.en.eq(at["IDLE"] & arbiter.valid),
            self.tlb_request.valid.eq(at["TLB_REQUEST"]),
            self.tlb_request.payload.asid.eq(asid),
            self.tlb_request.payload.va.eq(lookup_va),
            self.tlb_response.ready.eq(at["TLB_WAIT"]),
            self.fault.valid.eq(at["FAULT"]),
            self.fault.payload.kind.eq(fault_kind),
            self.fault.payload.endpoint.eq(current),
            self.fault.payload.asid.eq(asid),
            self.fault.payload.va.eq(fault_va),
            self.fault.payload.node.eq(node_number(self)),
            self.miss_answer.ready.eq(at["ANSWER"]),
            # A DMA header waits for its first payload word (see the class docstring).
            framer.header.valid.eq((checked & ~facts["translate"])
                                   | (at["PREFETCH"] & prefetch.r_rdy)),
        ]
        header = framer.header.payload
        m.d.comb += [
            header.dst_node.eq(desc.dst_node),
            header.src_node.eq(node_number(self)),
            header.dst_endpoint.eq(desc.dst_endpoint),
            header.kind.eq(MessageKind.PUT),
            header.notify.eq((desc.flags & SendFlags.NOTIFY.value) != 0),
            header.length.eq(desc.length),
            header.key.eq(desc.key),
            header.remote_va.eq(desc.remote_va),
            header.src_endpoint.eq(current),
            header.metadata.eq(desc.metadata),
        ]

        # How a send ends: refused (a bad descriptor, a fault, a rejected miss), or sent.
        refuse, finish = Signal(), Signal()
        refuse_error = Signal(TxError)
        m.d.comb += [
            refuse.eq((at["CHECK"] & (facts["error"] != TxError.NONE))
                      | (at["FAULT"] & self.fault.ready
                         & (fault_kind != NiFaultKind.TX_MISS))
                      | (at["ANSWER"] & self.miss_answer.valid
                         & self.miss_answer.payload.reject)),
            finish.eq(at["SEND"] & trailer_sent),
        ]
        with m.If(at["CHECK"]):
            m.d.comb += refuse_error.eq(facts["error"])
        with m.Elif(at["FAULT"]):
            m.d.comb += refuse_error.eq(TxError.DMA_FAULT)
        with m.Else():
            m.d.comb += refuse_error.eq(TxError.DMA_REJECTED)

        # STATUS: the doorbell sets busy; the end of the send clears it.
        doorbell = self.doorbell.payload
        m.d.comb += self.doorbell.ready.eq(1)
        for index, entry in enumerate(status):
            with m.If(self.doorbell.valid & (doorbell.endpoint == index)):
                m.d.sync += [entry.busy.eq(1), entry.error.eq(TxError.NONE),
                             asids[index].eq(doorbell.asid)]
            with m.Elif(refuse & (current == index)):
                m.d.sync += [entry.busy.eq(0), entry.error.eq(refuse_error)]
            with m.Elif(finish & (current == index)):
                # (error went NONE at the doorbell)
                m.d.sync += [entry.busy.eq(0), entry.sent.eq(entry.sent + 1)]
        header_seq = Signal(16)
        m.d.comb += header.seq.eq(header_seq)
        for node, node_seq in enumerate(seq):
            with m.If(desc.dst_node == node):
                m.d.comb += header_seq.eq(node_seq)
                with m.If(header_taken):
                    m.d.sync += node_seq.eq(node_seq + 1)
        counts = {name: getattr(self, f"count_{name}") for name in TX_COUNTERS}
        m.d.sync += [
            counts["sent"].eq(counts["sent"] + finish),
            counts["refused"].eq(counts["refused"] + refuse),
            counts["misses"].eq(counts["misses"] + (at["TLB_WAIT"]
                                                    & self.tlb_response.valid
                                                    & (answer.status == TlbStatus.MISS))),
        ]

        self._fetch(m, framer, prefetch, payload_read, current, facts, ppn,
                    start=at["CHECK"],
                    fetching=at["PREFETCH"] | at["SEND"],
                    drained=drained)

    def _fetch(self, m, framer, prefetch, payload_read, current, facts, ppn, *, start, fetching,
               drained):
        """Fill the prefetch FIFO with the payload: from the slot (PIO) or a line at a time
        from the MessageBuffer or memory (DMA)."""
        depth = self._send_buffering * LINE_WORDS
        # Words of room in the FIFO not yet promised to a read; a DMA line promises all 8 of its
        # words, and the words it does not cover give their room back as they arrive.
        room = Signal(range(depth + 1))
        # PIO: payload words read. DMA: lines probed, lines answered, words arrived (in order).
        words_read = Signal(range(SLOT_WORDS + 1))
        lines_probed = Signal(range(MAX_LINES + 1))
        lines_answered = Signal(range(MAX_LINES + 1))
        lines_arrived = Signal(range(MAX_LINES + 1))
        # Arriving words still to drop in front of the payload, and payload words still to come.
        words_to_skip = Signal(_LINE_SHIFT - _WORD_SHIFT)
        words_to_keep = Signal.like(facts["words"])
        # Lines asked of memory whose words have not all arrived (including the one in dma_read).
        memory_lines = Signal(range(self._send_buffering + 1))
        dma = facts["dma"]

        # PIO: a word read per cycle while there is room; the RAM answers at the next edge.
        pio_read, pio_word = Signal(), Signal()
        endpoint_bits = (self._endpoints - 1).bit_length()
        m.d.comb += [
            pio_read.eq(fetching & ~dma & (words_read < facts["words"]) & (room != 0)),
            payload_read.en.eq(pio_read),
            payload_read.addr.eq(Cat(words_read[:len(payload_read.addr) - endpoint_bits],
                                     current[:endpoint_bits])),
        ]
        m.d.sync += pio_word.eq(pio_read)

        # DMA probes: the next line when its 8 words have room and the probe register is free.
        probe, probe_free = Signal(), Signal()
        m.d.comb += [
            probe_free.eq(~self.ni_read.valid | self.ni_read.ready),
            probe.eq(fetching & dma & (lines_probed < facts["lines"])
                     & (room >= LINE_WORDS) & probe_free),
        ]
        probe_addr = self._line_addr(m, "probe_addr", facts, ppn, lines_probed)
        with m.If(probe):
            m.d.sync += [self.ni_read.valid.eq(1), self.ni_read.payload.addr.eq(probe_addr)]
        with m.Elif(self.ni_read.ready):
            m.d.sync += self.ni_read.valid.eq(0)

        # Answers: a miss goes to memory through the dma_read register; a hit's words are taken
        # once memory has delivered every line asked for before it.
        beat = self.ni_data.payload
        miss_taken, hit_taken, memory_word, memory_done = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            self.ni_data.ready.eq(Mux(beat.hit, memory_lines == 0,
                                      ~self.dma_read.valid | self.dma_read.ready)),
            miss_taken.eq(self.ni_data.valid & self.ni_data.ready & ~beat.hit),
            hit_taken.eq(self.ni_data.valid & self.ni_data.ready & beat.hit),
            self.dma_data.ready.eq(1),
            memory_word.eq(self.dma_data.valid),
            memory_done.eq(self.dma_data.valid & self.dma_data.payload.last),
        ]
        answer_addr = self._line_addr(m, "answer_addr", facts, ppn, lines_answered)
        with m.If(miss_taken):
            m.d.sync += [self.dma_read.valid.eq(1), self.dma_read.payload.addr.eq(answer_addr)]
        with m.Elif(self.dma_read.ready):
            m.d.sync += self.dma_read.valid.eq(0)

        # Arriving words into the FIFO (memory's first: a hit waits for memory to be done), the
        # ones outside the payload dropped.
        arrived, covered, dropped = Signal(), Signal(), Signal()
        arrived_data = Signal(FLIT_DATA_BITS)
        m.d.comb += [
            arrived.eq(memory_word | hit_taken),
            arrived_data.eq(Mux(memory_word, self.dma_data.payload.data, beat.data)),
            covered.eq((words_to_skip == 0) & (words_to_keep != 0)),
            dropped.eq(arrived & ~covered),
            prefetch.w_en.eq(pio_word | (arrived & covered)),
            prefetch.w_data.eq(Mux(pio_word, payload_read.data, arrived_data)),
            drained.eq(~dma | (lines_arrived == facts["lines"])),
        ]

        # The FIFO to the framer.
        popped = Signal()
        m.d.comb += [
            framer.payload.valid.eq(prefetch.r_rdy),
            framer.payload.payload.eq(prefetch.r_data),
            prefetch.r_en.eq(framer.payload.ready),
            popped.eq(prefetch.r_rdy & framer.payload.ready),
        ]

        # Room claimed by a read or a probe (given back by a word sent or dropped).
        # (never more than there is: a claim is made only with the room for it)
        claimed, unclaimed = Signal.like(room), Signal.like(room)
        m.d.comb += [claimed.eq(Mux(probe, LINE_WORDS, pio_read)),
                     unclaimed.eq(room - claimed)]

        # The counts, restarted for each send.
        with m.If(start):
            m.d.sync += [room.eq(depth), words_read.eq(0), lines_probed.eq(0),
                         lines_answered.eq(0), lines_arrived.eq(0), memory_lines.eq(0),
                         words_to_skip.eq(facts["first_word"]), words_to_keep.eq(facts["words"])]
        with m.Else():
            m.d.sync += [
                room.eq(unclaimed + popped + dropped),
                words_read.eq(words_read + pio_read),
                lines_probed.eq(lines_probed + probe),
                lines_answered.eq(lines_answered
                                  + (self.ni_data.valid & self.ni_data.ready & beat.last)),
                lines_arrived.eq(lines_arrived + (memory_done | (hit_taken & beat.last))),
                memory_lines.eq(memory_lines + miss_taken - memory_done),
            ]
            with m.If(dropped & (words_to_skip != 0)):
                m.d.sync += words_to_skip.eq(words_to_skip - 1)
            with m.If(arrived & covered):
                m.d.sync += words_to_keep.eq(words_to_keep - 1)
        m.d.sync += self.count_dma_lines.eq(self.count_dma_lines + probe)

    def _line_addr(self, m, name, facts, ppn, line):
        """Return a signal holding the physical line address of the payload's line ``line``."""
        desc_line = Signal(_LINES_PER_PAGE_BITS + 1, name=f"{name}_in_page")
        addr = Signal(LINE_ADDR_BITS, name=name)
        m.d.comb += [
            desc_line.eq(facts["first_line"] + line),
            addr.eq(Cat(desc_line[:_LINES_PER_PAGE_BITS],
                        Mux(desc_line[_LINES_PER_PAGE_BITS], ppn[1], ppn[0]))),
        ]
        return addr
