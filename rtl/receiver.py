from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .framing import LINK_CRC
from .layouts import (ASID_BITS, ENDPOINT_BITS, FLIT_BYTES, FLIT_DATA_BITS, HEADER_FLITS,
                      LINE_BYTES, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_WORDS, NODE_BITS, PAGE_BITS,
                      VA_BITS, EndpointEntry, Flit, MessageHeader, MessageKind, MissAnswer,
                      NiFault, NiFaultKind, RxJob, RxLineHint, RxStagedWord, RxTranslation,
                      TlbStatus, Trailer, rx_lookup_layout)
from .onehot import get_indexed
from .params import check_int, check_node, node_number, node_strap

__all__ = ["MessageReceiver", "STATES", "FAULT_COUNTERS"]

#: The receiver's states, in the order of their encoding (the stall report of :mod:`tb.system_tb`
#: names them from this): taking flits up to the trailer; waiting for the translation of a good
#: message; reporting a fault; waiting for the OS's answer to a miss; requesting the translation
#: again after it; waiting for the packet queue to take the message as a job.
STATES = ("RECEIVE", "DELIVER", "FAULT", "ANSWER", "RETRY", "HANDOFF")

#: The counter (``count_<name>``) each fault kind of a discarded message (or a miss) counts in.
FAULT_COUNTERS = {
    NiFaultKind.BAD_CRC: "bad_crc",
    NiFaultKind.TRUNCATED: "truncated",
    NiFaultKind.BAD_HEADER: "bad_header",
    NiFaultKind.BAD_ENDPOINT: "bad_endpoint",
    NiFaultKind.RX_KEY: "key_faults",
    NiFaultKind.RX_PERMISSION: "permission_faults",
    NiFaultKind.RX_MISS: "misses",
}

#: Flits counted per message before the counter saturates: more than any header's length asks
#: (``HEADER_FLITS`` + 4095 // 8), so a saturated count is always a mismatch.
_FLIT_COUNT_LIMIT = 1023
#: Bits of a byte address below the word, and below the line.
_WORD_SHIFT = FLIT_BYTES.bit_length() - 1
_LINE_SHIFT = LINE_BYTES.bit_length() - 1


class MessageReceiver(wiring.Component):
    """Takes the messages arriving at the RX engine, checks them, and hands those that pass (or
    are rejected) to the engine's packet queue as jobs.

    Part of :class:`rtl.rxengine.RxEngine`. One message at a time comes in from ``flits``, its
    payload into the :class:`rtl.packetqueue.PacketQueue`'s staging RAM (``staging``) while the
    CRC-32 runs over it; every message is taken up to its ``last`` flit, whatever is wrong with
    it.

    **Checks.** The flit with ``last`` is the trailer, whatever the header's length says: the CRC
    is that of every flit before it. Then, in this order (one fault each, the message
    discarded: nothing written, no completion):

    * BAD_CRC: the trailer's ``crc`` is not the CRC of the flits before it (so a message whose
      ``last`` flag was lost, and which ran into the next one, is BAD_CRC);
    * TRUNCATED: the flits before the trailer are not the ``HEADER_FLITS + length // 8`` the
      header asks for (``last`` too early, or none where it should be: the receiver took flits
      up to the next ``last``);
    * BAD_HEADER: ``dst_node`` is not ``node``, ``kind`` is not PUT, or ``length`` is not a
      multiple of 8 or above MAX_PAYLOAD_BYTES;
    * BAD_ENDPOINT: ``dst_endpoint`` is ``endpoints`` or above, or its entry is not enabled.

    The endpoint entry (``endpoints``) is read as the message's first flit comes in.

    **Translation.** The receiver requests the translation of the pages of ``remote_va ..
    remote_va + length - 1`` (``translate``, to the :class:`rtl.translator.RxTranslator`) as the
    header's second flit (the VA) is taken, in the endpoint's ASID with the message's key, so
    that the answers arrive while the payload does. It acts on the answers only once the message
    has passed the checks above, so a bad message never reports a miss: in page order, the first
    answer that is not HIT decides. RX_PERMISSION or RX_KEY discards the message (fault,
    counted); MISS reports RX_MISS and waits for ``miss_answer``: retry requests the translation
    again; reject reports RX_REJECTED and hands the message on as a rejected job (a completion
    entry with status REJECTED and no payload). Faults are reported in arrival order.

    **Staging.** The payload words go to ``staging``, as many as the header asks for (at most
    :data:`rtl.layouts.MAX_PAYLOAD_WORDS`; more belong to a message that is TRUNCATED or has a
    BAD_HEADER anyway). The first payload flit (or the trailer in its place) waits until
    ``staging`` is ready for them all.

    **Timing.** ``flits`` takes one flit per cycle while a message streams in. It holds a first
    flit until ``translate`` is ready (the lookups of the message before are over), and the
    first payload flit as above. It takes nothing from the trailer until the message is
    discarded or has become a job (``message`` taken, in the trailer's cycle at the earliest):
    while its translation, fault report or miss answer is pending, and while ``message`` is not
    ready. A retry requests the translation in the cycle after the miss answer is taken.

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
        The link into the node, as above.
    endpoints : In(EndpointEntry).array(endpoints)
        The NI's endpoint table.
    translate : Out(stream.Signature(rx_lookup_layout(asid_bits)))
        The translation of each message as its VA flit is taken, and again for a retry; the
        translator is ready then (the first flit waited for it).
    translation : In(RxTranslation)
        The translator's answers, as they stand.
    fault : Out(stream.Signature(NiFault))
        One per discarded message, per miss (RX_MISS) and per rejection (RX_REJECTED); ``node``
        is the source node, ``endpoint`` the destination endpoint, ``asid`` its ASID (0 for an
        endpoint the NI does not have), ``va`` the page for translation faults (else 0). The
        receiver waits while it is not taken.
    miss_answer : In(stream.Signature(MissAnswer))
        Taken only after an RX_MISS fault has been taken, one per miss.
    staging : Out(stream.Signature(RxStagedWord))
        The payload words to keep, as above.
    message : Out(stream.Signature(RxJob))
        The message as a job, offered from its trailer's cycle (or once its translation or miss
        answer is in) until taken; ``stamp`` counts cycles from reset to the trailer's.
    next_line : Out(RxLineHint)
        The first payload line of the message coming in, from its header and its first page's
        translation so far; not ``valid`` without payload or once rejected.
    count_bad_crc, count_truncated, count_bad_header, count_bad_endpoint, count_key_faults, \
    count_permission_faults, count_misses : Out(32)
        Faults reported, per kind (:data:`FAULT_COUNTERS`; wrapping).
    """

    def __init__(self, *, node=0, endpoints=8, asid_bits=ASID_BITS):
        self._node = check_node(self, node, (1 << NODE_BITS) - 1)
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, 16)
        self._link_crc = LINK_CRC.create()
        super().__init__({
            "flits": In(stream.Signature(Flit)),
            "endpoints": In(EndpointEntry).array(endpoints),
            "translate": Out(stream.Signature(rx_lookup_layout(asid_bits))),
            "translation": In(RxTranslation),
            "fault": Out(stream.Signature(NiFault)),
            "miss_answer": In(stream.Signature(MissAnswer)),
            "staging": Out(stream.Signature(RxStagedWord)),
            "message": Out(stream.Signature(RxJob)),
            "next_line": Out(RxLineHint),
            **{f"count_{name}": Out(32) for name in FAULT_COUNTERS.values()},
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

    @property
    def link_crc(self):
        """The CRC-32 unit the flits before each trailer go through."""
        return self._link_crc

    def elaborate(self, platform):
        m = Module()

        # Submodules: the link CRC.
        m.submodules.crc = link_crc = self._link_crc

        # The message's registers, filled as its flits are taken.
        header = Signal(MessageHeader)
        entry = Signal(EndpointEntry)
        flit_index = Signal(range(_FLIT_COUNT_LIMIT + 1))
        cycle = Signal(64)
        stamp = Signal(64)
        rejected = Signal()
        flit = self.flits.payload
        taken = Signal()
        trailer = Signal()
        m.d.comb += [
            taken.eq(self.flits.valid & self.flits.ready),
            trailer.eq(taken & flit.last),
        ]
        arriving_endpoint = Signal(ENDPOINT_BITS)
        m.d.comb += arriving_endpoint.eq(
            flit.data[MessageHeader["dst_endpoint"].offset:][:ENDPOINT_BITS])
        arriving_entry = get_indexed(m, self.endpoints, arriving_endpoint, EndpointEntry,
                                     "arriving_entry")
        # Whether the flit coming in is the first, the VA flit or the first payload flit, kept in
        # registers beside its index rather than compared from it: they decide whether a flit is
        # taken, which the CRC's start and its 64-bit update wait for. (The index saturates far
        # above them, so only a trailer brings it back to 0.)
        at_first = Signal(init=1)
        at_va = Signal()
        at_payload = Signal()
        # Whether the FSM (below) is in RECEIVE, also in a register of its own, set with each
        # transition: decoding it from the state register would be one more level of logic in
        # front of taking a flit.
        receiving = Signal(init=1)
        m.d.sync += cycle.eq(cycle + 1)
        with m.If(taken):
            m.d.sync += [
                flit_index.eq(Mux(flit_index == _FLIT_COUNT_LIMIT, flit_index, flit_index + 1)),
                at_first.eq(flit.last),
                at_va.eq(at_first & ~flit.last),
                at_payload.eq((flit_index == HEADER_FLITS - 1) & ~flit.last),
            ]
            for index in range(HEADER_FLITS):
                with m.If((flit_index == index) & ~flit.last):
                    m.d.sync += header.as_value().word_select(index, FLIT_DATA_BITS).eq(flit.data)
            with m.If(at_first):
                m.d.sync += [entry.eq(arriving_entry), rejected.eq(0)]
            with m.If(flit.last):
                m.d.sync += [flit_index.eq(0), stamp.eq(cycle)]

        # The CRC of every flit before the trailer. It starts over in each cycle a first flit
        # is awaited (from registers only: the start chooses the state its 64-bit update begins
        # from), and a message of a lone ``last`` flit is checked against the CRC of nothing.
        m.d.comb += [
            link_crc.data.eq(flit.data),
            # (taken & ~flit.last, written out from the terms of ``flits.ready`` rather than
            # through it: fewer levels of logic in front of the end of the CRC's update)
            link_crc.valid.eq(self.flits.valid & ~flit.last & receiving
                              & Mux(at_first, self.translate.ready,
                                    ~at_payload | self.staging.ready)),
            link_crc.start.eq(receiving & at_first),
        ]

        # Checks on the trailer's cycle: the header registers are complete unless the message is
        # shorter than a header, which then fails the count first. The checks of the first flit
        # (the flit count its length asks for, its kind and length, the endpoint) are made as it
        # is taken, into registers, so that the verdict waits for no sum and no compare of the
        # header. They are the message's own on its trailer's cycle unless its first flit is the
        # trailer; then they are the message's before, but the count fails, as every count they
        # hold (HEADER_FLITS from reset on) is above 0.
        payload_words = Signal(range(1 << 9))
        expected_flits = Signal(range(_FLIT_COUNT_LIMIT + 1), init=HEADER_FLITS)
        crc_bad = Signal()
        count_bad = Signal()
        header_bad = Signal()
        endpoint_bad = Signal()
        first_bad = Signal()
        arriving = MessageHeader(Cat(flit.data, C(0, MessageHeader.size - FLIT_DATA_BITS)))
        with m.If(taken & at_first):
            m.d.sync += [
                expected_flits.eq(HEADER_FLITS + arriving.length[_WORD_SHIFT:]),
                first_bad.eq((arriving.kind != MessageKind.PUT)
                             | (arriving.length[:_WORD_SHIFT] != 0)
                             | (arriving.length > MAX_PAYLOAD_BYTES)),
                # (every endpoint number is in range when the NI has 16)
                endpoint_bad.eq(((arriving.dst_endpoint >= self._endpoints)
                                 if self._endpoints < 1 << ENDPOINT_BITS else C(0))
                                | ~arriving_entry.enabled),
            ]
        m.d.comb += [
            payload_words.eq(header.length[_WORD_SHIFT:]),
            crc_bad.eq(Trailer(flit.data).crc
                       != Mux(at_first, LINK_CRC.compute([]), link_crc.crc)),
            count_bad.eq(flit_index != expected_flits),
            # (the node number is a strap, compared as it stands)
            header_bad.eq((header.dst_node != node_number(self)) | first_bad),
        ]

        # Payload words to the staging RAM, as many as the header asks for (at most a largest
        # payload's).
        staging_index = Signal(range(_FLIT_COUNT_LIMIT + 1))
        # (as wide as the counts it is compared with, which Verilator's -Wall asks for)
        needed = Signal(range(2 * MAX_PAYLOAD_WORDS + 1))
        staged = self.staging.payload
        m.d.comb += [
            staging_index.eq(flit_index - HEADER_FLITS),
            needed.eq(Mux(payload_words > MAX_PAYLOAD_WORDS, MAX_PAYLOAD_WORDS, payload_words)),
            staged.index.eq(staging_index),
            staged.words.eq(needed),
            staged.data.eq(flit.data),
        ]

        # The message as a job, and its first payload line.
        message = self.message.payload
        m.d.comb += [
            message.src_node.eq(header.src_node),
            message.src_endpoint.eq(header.src_endpoint),
            message.dst_endpoint.eq(header.dst_endpoint),
            message.notify.eq(header.notify),
            message.rejected.eq(rejected),
            message.length.eq(header.length),
            message.seq.eq(header.seq),
            message.remote_va.eq(header.remote_va),
            message.metadata.eq(header.metadata),
            message.stamp.eq(Mux(trailer, cycle, stamp)),
            message.ring_log2.eq(entry.ring_log2),
            message.ring_pa.eq(entry.ring_pa),
            message.ring_va.eq(entry.ring_va),
            message.ppn.eq(self.translation.ppn),
            self.next_line.valid.eq(~rejected & (header.length != 0)),
            self.next_line.addr.eq(Cat(header.remote_va[_LINE_SHIFT:PAGE_BITS],
                                       self.translation.ppn[0])),
        ]

        # The translation request, from the VA flit (or the header, for a retry).
        retry = Signal()
        lookup = self.translate.payload
        m.d.comb += [
            lookup.asid.eq(entry.asid),
            lookup.key.eq(header.key),
            lookup.va.eq(Mux(retry, header.remote_va,
                             flit.data[MessageHeader["remote_va"].offset - FLIT_DATA_BITS:])),
            lookup.length.eq(header.length),
        ]

        # The verdict of the checks on the trailer's cycle, and the fault being reported.
        failed = Signal()
        verdict = Signal(NiFaultKind)
        m.d.comb += [
            failed.eq(crc_bad | count_bad | header_bad | endpoint_bad),
            verdict.eq(Mux(crc_bad, NiFaultKind.BAD_CRC,
                           Mux(count_bad, NiFaultKind.TRUNCATED,
                               Mux(header_bad, NiFaultKind.BAD_HEADER,
                                   NiFaultKind.BAD_ENDPOINT)))),
        ]
        kind = Signal(NiFaultKind)
        va = Signal(VA_BITS)
        fault = self.fault.payload
        fault_taken = Signal(name="fault_taken")
        translation = self.translation
        first_page = Cat(C(0, PAGE_BITS), header.remote_va[PAGE_BITS:])

        # Every transition also sets ``receiving`` (see above).
        def go(state):
            m.next = state
            m.d.sync += receiving.eq(state == "RECEIVE")

        def report(fault_kind, fault_va=0):
            m.d.sync += [kind.eq(fault_kind), va.eq(fault_va)]
            go("FAULT")

        def offer():
            m.d.comb += self.message.valid.eq(1)
            with m.If(self.message.ready):
                go("RECEIVE")
            with m.Else():
                go("HANDOFF")

        def deliver():
            """Act on the translation once it is complete: report a refusal, or offer the
            message as a job."""
            with m.If(~translation.done):
                go("DELIVER")
            with m.Elif(translation.status == TlbStatus.MISS):
                report(NiFaultKind.RX_MISS, translation.va)
            with m.Elif(translation.status == TlbStatus.PERMISSION_FAULT):
                report(NiFaultKind.RX_PERMISSION, translation.va)
            with m.Elif(translation.status != TlbStatus.HIT):
                report(NiFaultKind.RX_KEY, translation.va)
            with m.Else():
                offer()

        with m.FSM(name="receive") as fsm:
            # (mentioned first here, so that the states are encoded in the order of STATES)
            at = {name: fsm.ongoing(name) for name in STATES}
            with m.State("RECEIVE"):
                with m.If(trailer & failed):
                    report(verdict)
                with m.Elif(trailer):
                    deliver()
            with m.State("DELIVER"):
                deliver()
            with m.State("FAULT"):
                with m.If(fault_taken & (kind == NiFaultKind.RX_MISS)):
                    go("ANSWER")
                with m.Elif(fault_taken & (kind == NiFaultKind.RX_REJECTED)):
                    go("HANDOFF")
                with m.Elif(fault_taken):
                    go("RECEIVE")
            with m.State("ANSWER"):
                with m.If(self.miss_answer.valid & self.miss_answer.payload.reject):
                    m.d.sync += rejected.eq(1)
                    report(NiFaultKind.RX_REJECTED, first_page)
                with m.Elif(self.miss_answer.valid):
                    go("RETRY")
            # (a state of its own, so that the request's VA is chosen by a register, not by the
            # OS's answer)
            with m.State("RETRY"):
                m.d.comb += retry.eq(1)
                with m.If(self.translate.ready):
                    go("DELIVER")
            with m.State("HANDOFF"):
                offer()

        # Outputs of the states: a first flit also waits for the translator, the first payload
        # flit for room in the staging RAM; the VA flit asks for the translation.
        m.d.comb += [
            self.flits.ready.eq(receiving
                                & Mux(at_first, self.translate.ready,
                                      ~at_payload | self.staging.ready)),
            self.staging.valid.eq(self.flits.valid & receiving & ~flit.last
                                  & (flit_index >= HEADER_FLITS) & (staging_index < needed)),
            self.translate.valid.eq((self.flits.valid & receiving & at_va & ~flit.last)
                                    | retry),
            self.miss_answer.ready.eq(at["ANSWER"]),
        ]

        # The fault of the message coming in, counted when taken.
        m.d.comb += [
            self.fault.valid.eq(at["FAULT"]),
            fault.kind.eq(kind),
            fault.endpoint.eq(header.dst_endpoint),
            fault.asid.eq(entry.asid),
            fault.va.eq(va),
            fault.node.eq(header.src_node),
            fault_taken.eq(self.fault.valid & self.fault.ready),
        ]
        with m.If(fault_taken):
            for fault_kind, name in FAULT_COUNTERS.items():
                counter = getattr(self, f"count_{name}")
                with m.If(kind == fault_kind):
                    m.d.sync += counter.eq(counter + 1)
        return m
