from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arbiter import RoundRobinArbiter
from .fetcher import PayloadFetcher
from .framing import MessageFramer
from .layouts import (ENDPOINT_BITS, FLIT_DATA_BITS, MAX_NODES, MAX_PAYLOAD_WORDS, TX_COUNTERS,
                      Doorbell, Flit, LineBeat, LineRequest, MissAnswer, NiFault, SendDescriptor,
                      TlbResponse, TxError, TxSlotWrite, TxStatus, WordBeat, tlb_lookup_layout)
from .onehot import below
from .params import check_int, check_node, node_strap
from .sendchecker import SendChecker

__all__ = ["TxEngine"]

#: The steps of a send, in the order of their encoding (the stall report of :mod:`tb.system_tb`
#: names them from this): waiting for a doorbelled endpoint; the send with the checker, the
#: fetcher and the framer; the fetcher done, the framer still sending; the trailer gone, the
#: fetcher still taking the last DMA line's other words.
STEPS = ("IDLE", "SEND", "TRAILER", "DRAIN")

assert MAX_PAYLOAD_WORDS <= 1 << TxSlotWrite["word"].width, "a slot word index fits its field"


class TxEngine(wiring.Component):
    """The send engine of the NI: takes doorbelled TX slots and puts their messages on the link.

    It follows the "Sending" section of :mod:`rtl.ni`, one message at a time.

    **Structure.** The engine keeps the TX slots, the STATUS registers and the sequence numbers,
    and picks the sends; each send then goes through three parts joined with
    :func:`~amaranth.lib.wiring.connect`, each handing it on to the next as a stream: a
    :class:`rtl.sendchecker.SendChecker` (submodule ``checker``: the descriptor checks and the
    DMA translation below), a :class:`rtl.fetcher.PayloadFetcher` (``fetcher``: the fetch and the
    prefetch buffer) and a :class:`rtl.framing.MessageFramer` (``framer``). The engine offers the
    send to the checker for as long as it lasts; the checker takes it with its refusal, or with
    its plan once the fetcher is done with that.

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

    **DMA fetch and the prefetch buffer.** The payload's words reach the framer through a
    prefetch buffer of ``send_buffering`` line slots of 8 words inside this engine (submodules
    ``fetcher.prefetch_even`` and ``fetcher.prefetch_odd``; PIO words pass through it too). A line
    is asked for only when the buffer has room for all 8 of its words beside every word already
    asked for and not yet sent, so the fetch runs at most ``send_buffering`` lines ahead of the
    wire and the buffer never refuses a word. Lines are fetched in order. Each is probed in the
    MessageBuffer (``ni_read``, one probe offered at a time, the next one offered while the
    answer to the one before streams in); a miss is then read from memory (``dma_read``), several
    lines outstanding. Each line's words go into its slot as they come, from the MessageBuffer or
    from memory, so a buffered line does not wait for the memory lines before it: a payload whose
    lines alternate between buffer and memory streams at 97 % of the link for 2 KiB at 10
    cycles of memory latency (100 % when all lines come from one of them). The words of the first
    and last line that the payload does not cover are never sent. The physical line of payload
    word ``i`` is ``(ppn << 12 | (local_va + 8 i) & 0xfff) >> 6``, with the PPN of the page that
    word is in. The header of a DMA send is offered once the first payload word is ready to go,
    so that the memory's latency is not a gap in the middle of a message, which would hold the
    Fabric's wormhole path idle.

    **Framing.** The header (``src_node`` this node, ``src_endpoint`` the sending endpoint,
    ``seq`` a counter per destination node from 0, ``notify`` the NOTIFY flag, ``kind`` PUT, the
    rest from the descriptor), the payload and the CRC-32 trailer go out through a
    :class:`rtl.framing.MessageFramer`. When the trailer is taken: STATUS busy low, error NONE,
    ``sent`` one more. The destination's ``seq`` advances as the send ends, before the next send
    is picked (refused sends take no sequence number).

    **Timing.** With ``flits`` always ready and the engine idle, a PIO send's first flit is
    taken at the 4th clock edge after the doorbell's transfer (arbitrate and read the
    descriptor, check, hand the plan to the fetcher and the header to the framer, send), and a
    PIO message streams at one flit per cycle. A DMA message of 2 KiB from a memory answering 10
    cycles after a read streams at one flit per cycle with ``send_buffering`` 4; its first flit
    leaves 24 cycles after the doorbell (12 when the lines are buffered). The next send is picked in the cycle
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
        DMA lines fetched ahead of the wire, 1 to 16: the prefetch buffer holds
        ``send_buffering * 8`` words.
    asid_bits : int
        Width of the NI TLB's ASIDs, 1 to 16 (the doorbell's ASID is zero-extended or truncated
        to it).

    Members
    -------
    buffering : In(range(1, send_buffering + 1))
        DMA lines fetched ahead, at most ``send_buffering`` (the fetcher's ``buffering``).
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
    count_dma_cycles, count_dma_buffer_word_cycles : Out(32)
        The prefetch buffer's use by DMA sends (wrapping): cycles a DMA send's payload was being
        fetched, and the sum over them of the buffer's words in use (the fetcher's counters of
        the same names).
    """

    def __init__(self, *, node=0, nodes=2, endpoints=8, send_buffering=4, asid_bits=8):
        self._node = check_node(self, node, MAX_NODES - 1)
        self._nodes = check_int(self, "nodes", nodes, 2, MAX_NODES)
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        self._send_buffering = check_int(self, "send_buffering", send_buffering, 1, 16)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, 16)
        super().__init__({
            "buffering": In(range(1, send_buffering + 1), init=send_buffering),
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

        # Submodules: the endpoint arbiter, the slot RAMs, and the send path: the checker, the
        # fetcher and the framer, each handing the send on to the next.
        # (the arbiter needs two requesters; a lone endpoint leaves the second one idle)
        m.submodules.arbiter = arbiter = RoundRobinArbiter(count=max(2, endpoints))
        m.submodules.descriptors = descriptors = Memory(
            shape=SendDescriptor.size, depth=max(2, endpoints), init=[])
        m.submodules.payloads = payloads = Memory(
            shape=FLIT_DATA_BITS, depth=endpoints * MAX_PAYLOAD_WORDS, init=[])
        m.submodules.checker = checker = SendChecker(node=self._node, nodes=self._nodes,
                                                     asid_bits=self._asid_bits)
        m.submodules.fetcher = fetcher = PayloadFetcher(send_buffering=self._send_buffering)
        m.submodules.framer = framer = MessageFramer()
        m.d.comb += fetcher.buffering.eq(self.buffering)
        wiring.connect(m, checker.plan, fetcher.plan)
        wiring.connect(m, fetcher.header, framer.header)
        wiring.connect(m, fetcher.words, framer.payload)
        for name in ("tlb_request", "tlb_response", "fault", "miss_answer"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(checker, name))
        for name in ("ni_read", "ni_data", "dma_read", "dma_data"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(fetcher, name))
        wiring.connect(m, wiring.flipped(self.flits), framer.flits)
        if self._node is None:
            m.d.comb += checker.node_id.eq(self.node_id)
        m.d.comb += [self.count_misses.eq(checker.count_misses),
                     self.count_dma_lines.eq(fetcher.count_dma_lines),
                     self.count_dma_cycles.eq(fetcher.count_dma_cycles),
                     self.count_dma_buffer_word_cycles.eq(fetcher.count_dma_buffer_word_cycles)]

        # The endpoints' registers: STATUS and the doorbell's ASID.
        status = [Signal(TxStatus, name=f"status{i}") for i in range(endpoints)]
        asids = [Signal(self._asid_bits, name=f"asid{i}") for i in range(endpoints)]
        for index in range(endpoints):
            m.d.comb += self.status[index].eq(status[index])
        m.d.comb += arbiter.requests.eq(Cat(entry.busy for entry in status))

        # The send in progress: its endpoint, ASID and descriptor (the descriptor RAM's read
        # register, read when the send is picked), offered to the checker for as long as the send
        # lasts, with the sequence number of its destination.
        current = Signal(range(max(2, endpoints)))
        asid = Signal(self._asid_bits)
        descriptor_read = descriptors.read_port()
        desc = Signal(SendDescriptor)
        seq = [Signal(16, name=f"seq{i}") for i in range(self._nodes)]
        send = checker.send
        m.d.comb += [
            desc.eq(descriptor_read.data),
            send.payload.endpoint.eq(current),
            send.payload.asid.eq(asid),
            send.payload.descriptor.eq(desc),
            descriptor_read.addr.eq(arbiter.grant),
        ]
        for node, node_seq in enumerate(seq):
            with m.If(desc.dst_node == node):
                m.d.comb += send.payload.seq.eq(node_seq)

        self._slot_writes(m, descriptors.write_port(granularity=FLIT_DATA_BITS),
                          payloads.write_port())
        self._slot_reads(m, fetcher, payloads.read_port(), current)

        # How a send ends: refused by the checker, or sent (the trailer taken) and done with by
        # the fetcher (which takes the send, through the checker, once the words of its last DMA
        # line have all come), in either order.
        refused, ended, trailer_sent = Signal(), Signal(), Signal()
        m.d.comb += [
            checker.refusal.ready.eq(1),
            refused.eq(checker.refusal.valid),
            ended.eq(send.valid & send.ready),
            trailer_sent.eq(self.flits.valid & self.flits.ready & self.flits.payload.last),
        ]
        with m.FSM(name="step") as fsm:
            # (mentioned first here, so that the steps are encoded in the order of STEPS)
            at = {name: fsm.ongoing(name) for name in STEPS}
            with m.State("IDLE"):
                # Pick a doorbelled endpoint and read its descriptor.
                m.d.comb += arbiter.advance.eq(1)
                with m.If(arbiter.valid):
                    m.d.sync += current.eq(arbiter.grant)
                    for index, endpoint_asid in enumerate(asids):
                        with m.If(arbiter.grant == index):
                            m.d.sync += asid.eq(endpoint_asid)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += send.valid.eq(1)
                with m.If(refused | (ended & trailer_sent)):
                    m.next = "IDLE"
                with m.Elif(ended):
                    m.next = "TRAILER"
                with m.Elif(trailer_sent):
                    m.next = "DRAIN"
            with m.State("TRAILER"):
                # The fetcher is done; the framer sends the rest of the message.
                with m.If(trailer_sent):
                    m.next = "IDLE"
            with m.State("DRAIN"):
                # The trailer has gone; stray words of the last DMA line are still on their way.
                m.d.comb += send.valid.eq(1)
                with m.If(ended):
                    m.next = "IDLE"
        # (the read port reads at every edge unless told not to)
        m.d.comb += descriptor_read.en.eq(at["IDLE"] & arbiter.valid)

        # STATUS: the doorbell sets busy; a refusal or the trailer clears it.
        doorbell = self.doorbell.payload
        m.d.comb += self.doorbell.ready.eq(1)
        for index, entry in enumerate(status):
            with m.If(self.doorbell.valid & (doorbell.endpoint == index)):
                m.d.sync += [entry.busy.eq(1), entry.error.eq(TxError.NONE),
                             asids[index].eq(doorbell.asid)]
            with m.Elif(refused & (current == index)):
                m.d.sync += [entry.busy.eq(0), entry.error.eq(checker.refusal.payload)]
            with m.Elif(trailer_sent & (current == index)):
                # (error went NONE at the doorbell)
                m.d.sync += [entry.busy.eq(0), entry.sent.eq(entry.sent + 1)]
        # A send that ends without a refusal has taken its destination's sequence number.
        for node, node_seq in enumerate(seq):
            with m.If(ended & ~refused & (desc.dst_node == node)):
                m.d.sync += node_seq.eq(node_seq + 1)
        m.d.sync += [
            self.count_sent.eq(self.count_sent + trailer_sent),
            self.count_refused.eq(self.count_refused + refused),
        ]
        return m

    def _slot_writes(self, m, descriptor_write, payload_write):
        """Write TX slot words as the MMIO decoder hands them over."""
        write = self.slot_write.payload
        known = Signal()
        endpoint_bits = (self._endpoints - 1).bit_length()
        m.d.comb += [
            self.slot_write.ready.eq(1),
            known.eq(below(write.endpoint, self._endpoints)),
            descriptor_write.addr.eq(write.endpoint),
            descriptor_write.data.eq(write.data.replicate(len(descriptor_write.en))),
            descriptor_write.en.eq(Mux(self.slot_write.valid & known & write.descriptor
                                       & (write.word < len(descriptor_write.en)),
                                       1 << write.word[:2], 0)),
            payload_write.addr.eq(Cat(write.word, write.endpoint[:endpoint_bits])),
            payload_write.data.eq(write.data),
            payload_write.en.eq(self.slot_write.valid & known & ~write.descriptor),
        ]

    def _slot_reads(self, m, fetcher, payload_read, current):
        """Read the payload words of the current send's slot as the fetcher asks for them; the
        RAM answers at the next clock edge."""
        endpoint_bits = (self._endpoints - 1).bit_length()
        read = fetcher.slot_read
        m.d.comb += [
            read.ready.eq(1),
            payload_read.en.eq(read.valid),
            payload_read.addr.eq(Cat(read.payload.word, current[:endpoint_bits])),
            fetcher.slot_data.payload.eq(payload_read.data),
        ]
        m.d.sync += fetcher.slot_data.valid.eq(read.valid)
