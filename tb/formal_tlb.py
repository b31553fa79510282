"""Proof harness of the NI TLB (:class:`rtl.tlb.NITLB`), for ``prove`` mode (k-induction).

:class:`TLBProof` wraps an NITLB whose every input is free (any request, any management command,
any backpressure, every cycle) and states, for both lookup ports:

1. *Soundness* (``hit-is-granted``). A HIT response is given only when a valid entry of the
   request's ASID maps the request's page, grants the access (local read on TX, remote write on
   RX) and, on RX, holds the request's key; the PPN returned is that entry's.
2. *Isolation after invalidation* (``no-hit-after-invalidation``). For any page (a, v) chosen by
   the solver: once an INVALIDATE of (a, v), an INVALIDATE_ASID of a or an INVALIDATE_ALL has
   completed (``NITLB.MGMT_LATENCY`` clock edges after the command's transfer), no response for
   (a, v) is a HIT until a FILL of (a, v) has completed.
3. *Exactly one response, on time* (``one-response-per-request``, ``response-on-time``). Every
   response answers an outstanding request, in order; at most two are outstanding per port; a
   request whose port was never stalled gets its response valid after the next clock edge (two
   cycles after the request's cycle).

"Maps the page" is the harness's own reading of the entry format (:func:`maps`), not the
design's compare, so a TLB that compares the wrong fields fails. Induction needs the properties
to be inductive, so the harness also asserts lemmas that tie the pipeline registers to the
table and to the outstanding requests (proven too): ``matched-entry-maps-request`` (an entry a
lookup matched maps the request's page in its ASID, so a TLB that ignores the ASID fails it as
soon as such a lookup is in flight), ``pipeline-lemmas`` (the rest). The proof uses a small TLB
(4 entries, 2-bit ASIDs, full 48-bit VAs): the logic is the same for every size, only
replicated per entry.
"""

from amaranth import *
from amaranth.hdl import Assume
from amaranth.hdl._ast import AnyConst
from amaranth.lib import wiring

from rtl.layouts import PAGE_BITS, VA_BITS, TlbOp, TlbStatus
from rtl.tlb import NITLB

from .formal_sby import Properties, drive_freely

__all__ = ["TLBProof", "NoASIDCompare", "maps", "TLB_PARAMS"]

#: The TLB the proof is about.
TLB_PARAMS = dict(entries=4, asid_bits=2)


class NoASIDCompare(NITLB):
    """A deliberately broken NI TLB that ignores the ASID: the proof must fail on it."""

    @staticmethod
    def _maps_halves(entry, asid, vpn):
        return NITLB._maps_halves(entry, entry.asid, vpn)


def maps(entry, asid, va):
    """Return whether ``entry`` (:func:`rtl.layouts.tlb_entry_layout`) is a valid translation of
    the 4 KiB page holding ``va`` (a :data:`rtl.layouts.VA_BITS` virtual address) in ``asid``:
    the specification's reading of the entry, written apart from the design's compare."""
    return entry.valid & (entry.asid == asid) & (entry.vpn == va[PAGE_BITS:VA_BITS])


def _page_va(vpn):
    """Return the VA of page ``vpn``'s first byte."""
    return Cat(C(0, PAGE_BITS), vpn)


class TLBProof(wiring.Component):
    """Proof harness around a TLB of ``tlb_class`` (:class:`~rtl.tlb.NITLB` or a variant) with
    :data:`TLB_PARAMS`."""

    def __init__(self, tlb_class=NITLB):
        self._tlb = tlb_class(**TLB_PARAMS)
        self.properties = Properties()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        tlb = self._tlb
        check = self.properties.check
        m.submodules.tlb = tlb

        # Inputs: anything, every cycle; no reset after the initial state.
        drive_freely(m, tlb)
        m.d.comb += Assume(~ResetSignal())

        # The table never holds two valid entries for one page.
        for i, a in enumerate(tlb.table):
            for b in tlb.table[i + 1:]:
                check(m, "unique-entries", ~(maps(a, b.asid, _page_va(b.vpn)) & b.valid))

        target_asid = Signal(tlb.asid_bits)
        target_va = Signal(VA_BITS)
        m.d.comb += [target_asid.eq(AnyConst(tlb.asid_bits)),
                     target_va.eq(_page_va(AnyConst(VA_BITS - PAGE_BITS)))]
        blocked = self._invalidation_tracker(m, tlb, target_asid, target_va)

        for pipe, request, response, remote in (
                (tlb.tx, tlb.tx_request, tlb.tx_response, False),
                (tlb.rx, tlb.rx_request, tlb.rx_response, True)):
            self._check_port(m, tlb, pipe, request, response, remote=remote, blocked=blocked,
                             target=(target_asid, target_va))
        return m

    def _invalidation_tracker(self, m, tlb, target_asid, target_va):
        """Return a signal that is high from the completion of an invalidation of the target
        page to the completion of a fill of it."""
        command = tlb.mgmt.payload
        taken = tlb.mgmt.valid & tlb.mgmt.ready
        on_page = (command.asid == target_asid) & (_page_va(command.vpn) == target_va)
        invalidates = taken & (
            ((command.op == TlbOp.INVALIDATE) & on_page)
            | ((command.op == TlbOp.INVALIDATE_ASID) & (command.asid == target_asid))
            | (command.op == TlbOp.INVALIDATE_ALL))
        fills = taken & (command.op == TlbOp.FILL) & on_page
        latency = tlb.MGMT_LATENCY
        invalidate_stage, fill_stage = Signal(latency), Signal(latency)
        blocked = Signal()
        m.d.sync += [
            invalidate_stage.eq(Cat(invalidates, invalidate_stage[:-1])),
            fill_stage.eq(Cat(fills, fill_stage[:-1])),
        ]
        with m.If(invalidate_stage[-1]):
            m.d.sync += blocked.eq(1)
        with m.Elif(fill_stage[-1]):
            m.d.sync += blocked.eq(0)
        # While blocked the table holds no translation of the target page.
        for entry in tlb.table:
            self.properties.check(m, "invalidated-page-not-in-table",
                                  ~(blocked & maps(entry, target_asid, target_va)))
        return blocked

    @staticmethod
    def _grants(entry, remote, key):
        if remote:
            return entry.perm.remote_write & (entry.key == key)
        return entry.perm.local_read

    def _check_port(self, m, tlb, pipe, request, response, *, remote, blocked, target):
        check = self.properties.check
        name = "rx" if remote else "tx"
        layout = request.payload.shape()
        push = request.valid & request.ready
        pop = response.valid & response.ready
        stall = response.valid & ~response.ready

        # The outstanding requests, oldest first, with their age in clock edges and whether the
        # port stalled since they were taken.
        slots = [Signal(layout, name=f"{name}_slot{i}") for i in range(2)]
        ages = [Signal(2, name=f"{name}_age{i}") for i in range(2)]
        delayed = [Signal(name=f"{name}_delayed{i}") for i in range(2)]
        count = Signal(range(3), name=f"{name}_count")
        m.d.sync += count.eq(count + push - pop)
        for i in range(2):
            # After a pop, slot i takes what was in slot i + 1; a push fills slot count - pop.
            keep = slots[i + 1] if i + 1 < 2 else slots[i]
            keep_age = ages[i + 1] if i + 1 < 2 else ages[i]
            keep_delayed = delayed[i + 1] if i + 1 < 2 else delayed[i]
            shifted = (Mux(pop, keep, slots[i]), Mux(pop, keep_age, ages[i]),
                       Mux(pop, keep_delayed, delayed[i]))
            with m.If(push & (count - pop == i)):
                m.d.sync += [slots[i].eq(request.payload), ages[i].eq(0), delayed[i].eq(0)]
            with m.Else():
                m.d.sync += [
                    slots[i].eq(shifted[0]),
                    ages[i].eq(Mux(shifted[1] == 3, 3, shifted[1] + 1)),
                    delayed[i].eq(shifted[2] | stall),
                ]

        # Exactly one response per request, on time.
        check(m, "one-response-per-request", count == pipe.s1_valid + response.valid)
        check(m, "one-response-per-request", ~response.valid | (count != 0))
        with m.If((count != 0) & ~delayed[0]):
            check(m, "response-on-time", ages[0] <= 1)
            with m.If(ages[0] == 1):
                check(m, "response-on-time", response.valid)

        head = slots[0]
        s1_request = Signal(layout, name=f"{name}_s1_request")    # the request in stage 1
        m.d.comb += s1_request.eq(Mux(response.valid, slots[1].as_value(), slots[0].as_value()))
        lemma = "pipeline-lemmas"
        check(m, lemma, (pipe.s1_tag_permitted & ~pipe.s1_tag) == 0)
        check(m, lemma, (pipe.s1_tag_granted & ~pipe.s1_tag_permitted) == 0)
        check(m, lemma, (pipe.s1_permitted & ~pipe.s1_match) == 0)
        check(m, lemma, (pipe.s1_granted & ~pipe.s1_permitted) == 0)
        for index, entry in enumerate(tlb.table):
            # An entry matched in stage 1 and not written since maps the stage's request, and
            # the stage's checks of it are current.
            with m.If(pipe.s1_valid & pipe.s1_match[index] & ~pipe.s1_written[index]):
                permitted = entry.perm.remote_write if remote else entry.perm.local_read
                check(m, "matched-entry-maps-request", maps(entry, s1_request.asid, s1_request.va))
                check(m, lemma, pipe.s1_permitted[index] == permitted)
                check(m, lemma,
                      pipe.s1_granted[index] == self._grants(entry, remote, s1_request.key))
            # A fresh answer in the response register comes from an entry of the request's page;
            # a HIT from one that grants it, with its frame.
            with m.If(response.valid & pipe.out_entry[index] & ~pipe.out_stale):
                check(m, "matched-entry-maps-request", maps(entry, head.asid, head.va))
                with m.If(pipe.out_status == TlbStatus.HIT):
                    check(m, lemma, self._grants(entry, remote, head.key))
                    check(m, lemma, entry.ppn == pipe.out_ppn)
        # The output stage's flags nest as the vectors they reduce do.
        check(m, lemma, (~pipe.out_granted | pipe.out_permitted)
              & (~pipe.out_permitted | pipe.out_matched))
        with m.If(response.valid & ~pipe.out_stale & (pipe.out_status == TlbStatus.HIT)):
            check(m, lemma, pipe.out_entry.any())

        # Property 1, as the requester sees it: a HIT is a translation the table grants.
        with m.If(pop & (response.payload.status == TlbStatus.HIT)):
            check(m, "hit-is-granted", Cat(
                maps(entry, head.asid, head.va)
                & self._grants(entry, remote, head.key) & (entry.ppn == response.payload.ppn)
                for entry in tlb.table).any())
        # Property 2: no HIT on an invalidated page until it is filled again.
        target_asid, target_va = target
        on_target = (head.asid == target_asid) & (_page_va(head.va[PAGE_BITS:]) == target_va)
        check(m, "no-hit-after-invalidation",
              ~(pop & (response.payload.status == TlbStatus.HIT) & on_target & blocked))
