from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (ASID_BITS, FLIT_BYTES, MAX_NODES, MAX_PAYLOAD_BYTES, NODE_BITS, PAGE_BITS,
                      PPN_BITS, VA_BITS, MessageKind, MissAnswer, NiFault, NiFaultKind, SendFlags,
                      SendPlan, TlbResponse, TlbStatus, TxError, tlb_lookup_layout,
                      tx_send_layout)
from .params import check_int, check_node, node_number, node_strap

__all__ = ["SendChecker"]

#: Bits of a byte address below the word, and words in a page.
_WORD_SHIFT = FLIT_BYTES.bit_length() - 1
_PAGE_WORDS = 1 << (PAGE_BITS - _WORD_SHIFT)

#: The checker's states, in the order of their encoding (the stall report of
#: :mod:`tb.system_tb` names them from this).
STATES = ("CHECK", "LOOKUP", "WAIT", "FAULT", "ANSWER", "PLAN")

assert MAX_PAYLOAD_BYTES <= 1 << PAGE_BITS, "a payload spans at most two pages"


class SendChecker(wiring.Component):
    """Checks a send of the TX engine and translates its DMA pages; refuses it, or hands it on as a
    plan: its message header and where its payload is.

    Part of :class:`rtl.txengine.TxEngine`, whose docstring gives the rules it keeps (the
    checks' order, the lookups, the faults, the OS's answers); the engine's scheduler offers
    ``send``, its :class:`rtl.fetcher.PayloadFetcher` takes ``plan``. One send at a time.

    **Checks.** The descriptor of an offered send is checked combinationally: BAD_LENGTH (length
    not a multiple of 8 or above MAX_PAYLOAD_BYTES), BAD_NODE (``dst_node`` not below ``nodes``),
    BAD_FLAGS (a flag other than DMA and NOTIFY), in this order. A bad descriptor is refused in
    the cycle ``send`` is first offered.

    **Translation.** A DMA send with a payload has the page of ``local_va`` and, if the payload
    runs into the next page, that page looked up on ``tlb_request`` from the cycle after, one at
    a time, in the send's ASID. HIT keeps the PPN. MISS reports a TX_MISS fault (``va`` the
    page's VA) and waits for ``miss_answer``: retry looks every page up again (a fill may have
    replaced the first page's entry too), reject refuses the send with DMA_REJECTED in the cycle
    the answer is taken. Any other answer reports a TX_PERMISSION fault and refuses the send with
    DMA_FAULT in the cycle the fault is taken.

    **Plan.** A PIO send, or a DMA send without payload, is offered on ``plan`` from the cycle
    after it is checked (the cycle ``send`` is first offered: the plan comes from a register, so
    that the checks and the fetcher's logic are not one path); a DMA send with a payload from the
    cycle after its last page's HIT. The plan's header has ``src_node`` this node, ``src_endpoint`` the
    sending endpoint, ``seq`` the send's, ``notify`` the NOTIFY flag, ``kind`` PUT and the rest
    from the descriptor; ``offset``, ``ppn`` and ``next_ppn`` locate a DMA payload (``ppn`` and
    ``next_ppn`` are meaningful only for the pages looked up).

    Parameters
    ----------
    node : int or None
        This NI's node number (the header's ``src_node``, a fault's ``node``), 0 to 15; None: it
        comes in on the strap port ``node_id``.
    nodes : int
        Nodes in the system, 2 to 16: a destination at or above is BAD_NODE.
    asid_bits : int
        Width of the NI TLB's ASIDs, 1 to 16.

    Members
    -------
    send : In(stream.Signature(tx_send_layout(asid_bits)))
        The send to check. It must hold until taken, which it is with its refusal or with its
        plan: the descriptor is read for as long as the send lasts.
    refusal : Out(stream.Signature(TxError))
        The error of a refused send, offered for one cycle; must be ready whenever valid (the TX
        engine's scheduler always is).
    plan : Out(stream.Signature(SendPlan))
        The send that passed, offered until taken; ``send`` is taken in the same cycle.
    tlb_request : Out(stream.Signature(tlb_lookup_layout(asid_bits)))
        The NI TLB's TX port (``key`` is 0); one lookup outstanding.
    tlb_response : In(stream.Signature(TlbResponse))
        One answer per lookup, in order; ready while a lookup is outstanding.
    fault : Out(stream.Signature(NiFault))
        TX_MISS (then the checker waits for ``miss_answer``) or TX_PERMISSION, with the sending
        endpoint, its ASID, the page's VA and this node; held until taken.
    miss_answer : In(stream.Signature(MissAnswer))
        Ready only after a TX_MISS fault has been taken, for one answer.
    count_misses : Out(32)
        TX_MISS answers of the TLB (wrapping).
    """

    def __init__(self, *, node=0, nodes=2, asid_bits=ASID_BITS):
        self._node = check_node(self, node, MAX_NODES - 1)
        self._nodes = check_int(self, "nodes", nodes, 2, MAX_NODES)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, 16)
        super().__init__({
            "send": In(stream.Signature(tx_send_layout(asid_bits))),
            "refusal": Out(stream.Signature(TxError)),
            "plan": Out(stream.Signature(SendPlan)),
            "tlb_request": Out(stream.Signature(tlb_lookup_layout(asid_bits))),
            "tlb_response": In(stream.Signature(TlbResponse)),
            "fault": Out(stream.Signature(NiFault)),
            "miss_answer": In(stream.Signature(MissAnswer)),
            "count_misses": Out(32),
            **node_strap(self._node),
        })

    @property
    def node(self):
        return self._node

    @property
    def nodes(self):
        return self._nodes

    @property
    def asid_bits(self):
        return self._asid_bits

    def elaborate(self, platform):
        m = Module()
        send = self.send.payload
        desc = send.descriptor
        answer = self.tlb_response.payload

        # The descriptor's checks, and the pages a DMA payload spans.
        error = Signal(TxError)
        words = Signal(len(desc.length) - _WORD_SHIFT)
        translate, two_pages = Signal(), Signal()
        page_va = [Signal(VA_BITS, name=f"page{i}_va") for i in range(2)]
        # (arithmetic on operands of one width, which Verilator lints clean)
        page_word = Signal(PAGE_BITS - _WORD_SHIFT)
        page_end = Signal(range(_PAGE_WORDS + (1 << len(words))))
        bad_length, bad_node, bad_flags = Signal(), Signal(), Signal()
        m.d.comb += [
            bad_length.eq((desc.length[:_WORD_SHIFT] != 0) | (desc.length > MAX_PAYLOAD_BYTES)),
            # (every destination is in the system when it has 16 nodes)
            bad_node.eq((desc.dst_node >= self._nodes)
                        if self._nodes < 1 << NODE_BITS else C(0)),
            bad_flags.eq((desc.flags & ~(SendFlags.DMA | SendFlags.NOTIFY).value) != 0),
            error.eq(Mux(bad_length, TxError.BAD_LENGTH,
                         Mux(bad_node, TxError.BAD_NODE,
                             Mux(bad_flags, TxError.BAD_FLAGS, TxError.NONE)))),
            words.eq(desc.length[_WORD_SHIFT:]),
            translate.eq(((desc.flags & SendFlags.DMA.value) != 0) & (words != 0)),
            page_word.eq(desc.local_va[_WORD_SHIFT:PAGE_BITS]),
            page_end.eq(page_word + words),
            two_pages.eq(page_end > _PAGE_WORDS),
            page_va[0].eq(Cat(C(0, PAGE_BITS), desc.local_va[PAGE_BITS:])),
            page_va[1].eq(Cat(C(0, PAGE_BITS), desc.local_va[PAGE_BITS:] + 1)),
        ]

        # Translation state: the page looked up, the frames found, the fault to report.
        # (registers of their own: the ports' other fields are driven combinationally)
        page = Signal()
        ppn = [Signal(PPN_BITS, name=f"page{i}_ppn") for i in range(2)]
        lookup_va, fault_va = Signal(VA_BITS), Signal(VA_BITS)
        fault_kind = Signal(NiFaultKind)
        m.d.comb += [
            self.tlb_request.payload.asid.eq(send.asid),
            self.tlb_request.payload.va.eq(lookup_va),
            self.fault.payload.kind.eq(fault_kind),
            self.fault.payload.endpoint.eq(send.endpoint),
            self.fault.payload.asid.eq(send.asid),
            self.fault.payload.va.eq(fault_va),
            self.fault.payload.node.eq(node_number(self)),
        ]

        # The plan: the message's header, and where its payload is.
        plan = self.plan.payload
        m.d.comb += [
            plan.header.dst_node.eq(desc.dst_node),
            plan.header.src_node.eq(node_number(self)),
            plan.header.dst_endpoint.eq(desc.dst_endpoint),
            plan.header.kind.eq(MessageKind.PUT),
            plan.header.notify.eq((desc.flags & SendFlags.NOTIFY.value) != 0),
            plan.header.length.eq(desc.length),
            plan.header.seq.eq(send.seq),
            plan.header.key.eq(desc.key),
            plan.header.remote_va.eq(desc.remote_va),
            plan.header.src_endpoint.eq(send.endpoint),
            plan.header.metadata.eq(desc.metadata),
            plan.dma.eq((desc.flags & SendFlags.DMA.value) != 0),
            plan.offset.eq(desc.local_va[:PAGE_BITS]),
            plan.ppn.eq(ppn[0]),
            plan.next_ppn.eq(ppn[1]),
        ]

        # The send's way through the checks; the send is taken with its refusal or its plan.
        look_up_first_page = [page.eq(0), lookup_va.eq(page_va[0])]
        with m.FSM(name="check") as fsm:
            # (mentioned first here, so that the states are encoded in the order of STATES)
            at = {name: fsm.ongoing(name) for name in STATES}
            with m.State("CHECK"):
                with m.If(self.send.valid & (error != TxError.NONE)):
                    m.d.comb += [self.refusal.valid.eq(1), self.refusal.payload.eq(error),
                                 self.send.ready.eq(self.refusal.ready)]
                with m.Elif(self.send.valid & translate):
                    m.d.sync += look_up_first_page
                    m.next = "LOOKUP"
                with m.Elif(self.send.valid):
                    # (the plan goes out from the next cycle, from the state register: the
                    # checks are too long a path in front of the fetcher's)
                    m.next = "PLAN"
            with m.State("LOOKUP"):
                m.d.comb += self.tlb_request.valid.eq(1)
                with m.If(self.tlb_request.ready):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.tlb_response.ready.eq(1)
                with m.If(self.tlb_response.valid):
                    m.d.sync += [fault_va.eq(lookup_va),
                                 fault_kind.eq(Mux(answer.status == TlbStatus.MISS,
                                                   NiFaultKind.TX_MISS,
                                                   NiFaultKind.TX_PERMISSION))]
                    with m.If(answer.status == TlbStatus.HIT):
                        with m.If(page):
                            m.d.sync += ppn[1].eq(answer.ppn)
                        with m.Else():
                            m.d.sync += ppn[0].eq(answer.ppn)
                        with m.If(page | ~two_pages):
                            m.next = "PLAN"
                        with m.Else():
                            m.d.sync += [page.eq(1), lookup_va.eq(page_va[1])]
                            m.next = "LOOKUP"
                    with m.Else():
                        m.next = "FAULT"
            with m.State("FAULT"):
                m.d.comb += self.fault.valid.eq(1)
                with m.If(self.fault.ready & (fault_kind == NiFaultKind.TX_MISS)):
                    m.next = "ANSWER"
                with m.Elif(self.fault.ready):
                    m.d.comb += [self.refusal.valid.eq(1),
                                 self.refusal.payload.eq(TxError.DMA_FAULT),
                                 self.send.ready.eq(self.refusal.ready)]
                    m.next = "CHECK"
            with m.State("ANSWER"):
                m.d.comb += self.miss_answer.ready.eq(1)
                with m.If(self.miss_answer.valid & self.miss_answer.payload.reject):
                    m.d.comb += [self.refusal.valid.eq(1),
                                 self.refusal.payload.eq(TxError.DMA_REJECTED),
                                 self.send.ready.eq(self.refusal.ready)]
                    m.next = "CHECK"
                with m.Elif(self.miss_answer.valid):
                    m.d.sync += look_up_first_page
                    m.next = "LOOKUP"
            with m.State("PLAN"):
                m.d.comb += [self.plan.valid.eq(1), self.send.ready.eq(self.plan.ready)]
                with m.If(self.plan.ready):
                    m.next = "CHECK"

        m.d.sync += self.count_misses.eq(self.count_misses
                                         + (at["WAIT"] & self.tlb_response.valid
                                            & (answer.status == TlbStatus.MISS)))
        return m
