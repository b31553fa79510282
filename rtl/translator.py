from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (ASID_BITS, FLIT_BYTES, PAGE_BITS, PPN_BITS, VA_BITS, RxTranslation,
                      TlbResponse, TlbStatus, rx_lookup_layout, tlb_lookup_layout)
from .params import check_int

__all__ = ["RxTranslator"]

#: Bits of a byte address below the word.
_WORD_SHIFT = FLIT_BYTES.bit_length() - 1


class RxTranslator(wiring.Component):
    """Looks up the pages of a message coming into the RX engine, and keeps the answers.

    Part of :class:`rtl.rxengine.RxEngine`: its :class:`rtl.receiver.MessageReceiver` requests
    the translation of each message as the header's VA flit comes in, so that the answers arrive
    while the payload does, and acts on them only once the message has passed its checks.

    **Lookups.** A request names the pages of ``va .. va + length - 1`` (the low 3 bits of ``va``
    ignored): none, one or two. Each is looked up on ``tlb_request`` in page order, one a cycle
    from the cycle after the request, in the request's ASID with its key. Lookups have no side
    effect. The same request offered again (a retry, once the OS filled a missing page) looks
    every page up again.

    **Translation.** ``translation`` shows the answers as they stand, counting one arriving in
    the same cycle: ``done`` once every page of the request has its answer; ``status`` the answer
    of the first page, in page order, that did not hit (HIT if none), and ``va`` that page's VA;
    ``ppn`` each page's frame. It holds until the next request.

    Parameters
    ----------
    asid_bits : int
        Width of the NI TLB's ASIDs, 1 to 16.

    Members
    -------
    request : In(stream.Signature(rx_lookup_layout(asid_bits)))
        The message to translate. Ready while no lookup is outstanding (every page looked up and
        answered); a request is taken in the cycle it is offered, if ready.
    translation : Out(RxTranslation)
        The last request's translation, as above.
    tlb_request : Out(stream.Signature(tlb_lookup_layout(asid_bits)))
        Lookups, driven from a register.
    tlb_response : In(stream.Signature(TlbResponse))
        One answer per lookup, in order; always ready.
    """

    def __init__(self, *, asid_bits=ASID_BITS):
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, 16)
        super().__init__({
            "request": In(stream.Signature(rx_lookup_layout(asid_bits))),
            "translation": Out(RxTranslation),
            "tlb_request": Out(stream.Signature(tlb_lookup_layout(asid_bits))),
            "tlb_response": In(stream.Signature(TlbResponse)),
        })

    @property
    def asid_bits(self):
        return self._asid_bits

    def elaborate(self, platform):
        m = Module()
        request = self.request.payload
        lookup = self.tlb_request.payload
        response = self.tlb_response.payload

        # The pages of a request; the lookups' progress: pages wanted, looked up and answered.
        page = Signal(VA_BITS)
        end = Signal(PAGE_BITS + 1)
        pages = Signal(range(3))
        wanted = Signal(range(3))
        issued = Signal(range(3))
        answered = Signal(range(3))
        first_va = Signal(VA_BITS, name="first_page_va")
        taken = Signal()
        issue = Signal()
        answer_taken = Signal()
        # ``idle``: no lookup outstanding (every page looked up and answered), as a register of
        # its own: ``request.ready``, which the receiver's flits wait for, then comes from no
        # compare. It, and what the translation compares an answer arriving with (below), are
        # worked out for a request taken from the request alone, and otherwise from the counts'
        # next values, so that no compare waits for the choice between the two.
        idle = Signal(init=1)
        issued_next = Signal.like(issued)
        answered_next = Signal.like(answered)
        m.d.comb += [
            page.eq(Cat(C(0, PAGE_BITS), request.va[PAGE_BITS:])),
            end.eq(Cat(C(0, _WORD_SHIFT), request.va[_WORD_SHIFT:PAGE_BITS]) + request.length),
            pages.eq(Mux(request.length == 0, 0, Mux(end > (1 << PAGE_BITS), 2, 1))),
            self.request.ready.eq(idle),
            taken.eq(self.request.valid & self.request.ready),
            self.tlb_request.valid.eq(issued != wanted),
            issue.eq(self.tlb_request.valid & self.tlb_request.ready),
            self.tlb_response.ready.eq(1),
            answer_taken.eq(self.tlb_response.valid),
            issued_next.eq(issued + issue),
            answered_next.eq(answered + answer_taken),
        ]

        # The translation this cycle, counting an answer arriving now. Answers arrive in page
        # order, so the first page, in page order, that did not hit is the first such answer:
        # it is kept (``refused``, its status and which page) as it arrives, and an answer
        # arriving meets only a choice on its way to ``translation``. The rest is registered:
        # which page the answer due next is for (``due``), and whether every answer, or all but
        # one, is in.
        ppn = [Signal(PPN_BITS, name=f"page{i}_ppn") for i in range(2)]
        due = [Signal(init=index == 0, name=f"page{index}_due") for index in range(2)]
        answer_now = [Signal(name=f"page{i}_answer_now") for i in range(2)]
        refused = Signal()
        refused_status = Signal(TlbStatus)
        refused_page = Signal()
        all_answered = Signal(init=1)
        one_answer_left = Signal()
        # (Every answer is to a lookup issued: ``answered`` counts up to ``issued``, which counts
        # up to ``wanted``, so every page answered is every page looked up. The count plus one
        # keeps the counts' width, which Verilator's -Wall asks for; 3 is no count.)
        with m.If(taken):
            m.d.sync += [
                wanted.eq(pages), issued.eq(0), answered.eq(0),
                idle.eq(pages == 0),
                all_answered.eq(pages == 0),
                refused.eq(0),
                # (``one_answer_left`` and ``due`` wait a cycle: no answer can arrive in the
                # cycle after a request, whose first lookup goes out then)
            ]
        with m.Else():
            m.d.sync += [
                issued.eq(issued_next), answered.eq(answered_next),
                idle.eq((issued_next == wanted) & (answered_next == issued_next)),
                all_answered.eq(answered_next == wanted),
                one_answer_left.eq((answered_next + 1)[:len(wanted)] == wanted),
                *(due[index].eq(answered_next == index) for index in range(2)),
            ]
            with m.If(answer_taken & ~refused & (response.status != TlbStatus.HIT)):
                m.d.sync += [refused.eq(1), refused_status.eq(response.status),
                             refused_page.eq(due[1])]
        translation = self.translation
        for index in range(2):
            m.d.comb += [
                answer_now[index].eq(answer_taken & due[index]),
                translation.ppn[index].eq(Mux(answer_now[index], response.ppn, ppn[index])),
            ]
        m.d.comb += [
            translation.done.eq(all_answered | (one_answer_left & answer_taken)),
            translation.status.eq(Mux(refused, refused_status,
                                      Mux(answer_taken, response.status, TlbStatus.HIT))),
            translation.va.eq(first_va + Mux(Mux(refused, refused_page, due[1]),
                                             1 << PAGE_BITS, 0)),
        ]

        # A request starts the lookups; each is issued and answered in page order.
        with m.If(taken):
            m.d.sync += [first_va.eq(page), lookup.asid.eq(request.asid),
                         lookup.key.eq(request.key), lookup.va.eq(page)]
        with m.If(issue):
            m.d.sync += lookup.va.eq(lookup.va + (1 << PAGE_BITS))
        with m.If(answer_taken):
            for index in range(2):
                with m.If(due[index]):
                    m.d.sync += ppn[index].eq(response.ppn)
        return m
