"""Unit tests of the TX engine's send checker (rtl/sendchecker.py) in the Amaranth simulator, with
the fake NI TLB and OS of tests/test_txengine.py, a scheduler that offers sends and a fetcher
that takes plans."""

from collections import deque

import pytest

from rtl.layouts import (MessageKind, NiFaultKind, SendFlags, SendPlan, TxError, codec,
                         tx_send_layout)
from rtl.params import silence_unused
from rtl.sendchecker import STATES, SendChecker
from tests.sim import background, edges, fsm_states, run, tracer, transfer, waiting
from tests.test_txengine import REFUSALS, Bench as EngineBench, Send

DMA, NOTIFY = SendFlags.DMA.value, SendFlags.NOTIFY.value


class Bench(EngineBench):
    """The checker with the engine bench's fake NI TLB and OS; a scheduler that offers each send
    until it is taken, and a fetcher that takes each plan ``plan_wait`` cycles after it is first
    offered. ``log`` holds, for every clock edge, the checker's handshakes at that edge."""

    def __init__(self, *, node=1, nodes=4, asid_bits=8, plan_wait=0, deadline_cycles=3000):
        self.dut = SendChecker(node=node, nodes=nodes, asid_bits=asid_bits)
        self.node, self.plan_wait, self.deadline_cycles = node, plan_wait, deadline_cycles
        self.tlb, self.pending_fills, self.miss_answers = {}, {}, deque()
        self.faults, self.lookups, self.answer_edges = [], [], []
        self.edge, self.done = 0, False
        self.send_codec = codec(tx_send_layout(asid_bits))
        self.log = []

    def payload(self, send, seq=0):
        return self.send_codec.pack(endpoint=send.endpoint, asid=send.asid, seq=seq,
                                    descriptor=dict(send.fields))

    async def check(self, ctx, send, seq=0):
        """Offer ``send`` until the checker takes it."""
        port = self.dut.send
        ctx.set(port.valid, 1)
        ctx.set(port.payload.as_value(), self.payload(send, seq))
        with waiting(ctx, f"the checker to take the send of endpoint {send.endpoint}"):
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    @background
    async def fetcher(self, ctx):
        plan = self.dut.plan
        waited = 0
        ctx.set(plan.ready, self.plan_wait == 0)
        async for _, _, valid, taken in ctx.tick().sample(plan.valid, transfer(plan)):
            if self.done:
                return
            waited = 0 if taken or not valid else waited + 1
            ctx.set(plan.ready, waited >= self.plan_wait)

    def run(self, user):
        dut = self.dut
        watch = tracer(self.log, until=lambda: self.done,
                       offered=dut.send.valid, taken=transfer(dut.send),
                       plan=dut.plan.valid, planned=transfer(dut.plan),
                       plan_bits=dut.plan.payload.as_value(),
                       refused=transfer(dut.refusal), error=dut.refusal.payload.as_value(),
                       lookup=transfer(dut.tlb_request), answer=transfer(dut.tlb_response),
                       fault=transfer(dut.fault), miss_answer=transfer(dut.miss_answer),
                       misses=dut.count_misses)

        async def user_then_stop(ctx):
            ctx.set(dut.refusal.ready, 1)
            await user(ctx)
            await ctx.tick().repeat(3)
            self.done = True

        run(dut, self.clock, self.translate, self.os, self.fetcher, watch, user_then_stop,
            deadline_cycles=self.deadline_cycles)

    def at(self, name):
        return edges(self.log, name)

    def plans(self):
        """The plans taken, unpacked."""
        return [codec(SendPlan).unpack(self.log[edge]["plan_bits"]) for edge in self.at("planned")]

    def header(self, send, seq=0):
        """The header the plan of ``send`` carries."""
        fields = send.fields
        return dict(dst_node=fields["dst_node"], src_node=self.node,
                    dst_endpoint=fields["dst_endpoint"], kind=MessageKind.PUT,
                    notify=int(bool(fields["flags"] & NOTIFY)), reserved0=0,
                    length=fields["length"], seq=seq, key=fields["key"],
                    remote_va=fields["remote_va"], src_endpoint=send.endpoint, reserved1=0,
                    metadata=fields["metadata"])


# PIO and sends without payload -------------------------------------------------------------------

def test_pio_send_is_planned_in_the_cycle_after_it_is_offered():
    """A good PIO send: the plan is offered from the edge after the first the send is, with the
    header as the contract says and the payload in the slot; taken there, with the send; no
    lookup."""
    bench = Bench(node=2)
    send = Send(5, dst_node=3, dst_endpoint=7, flags=NOTIFY, length=136, local_va=0x1234_5678)

    async def user(ctx):
        await bench.check(ctx, send, seq=0x4321)

    bench.run(user)
    assert bench.at("offered")[0] + 1 == bench.at("plan")[0] == bench.at("planned")[0]
    assert bench.at("taken") == bench.at("planned")
    plan, = bench.plans()
    assert plan["header"] == bench.header(send, seq=0x4321)
    assert (plan["dma"], plan["offset"]) == (0, 0x678)
    assert not bench.lookups and not bench.at("refused")


def test_dma_send_without_payload_is_planned_at_once():
    """A DMA send of 0 bytes, even from a VA no page maps: planned from the edge after, no
    lookup."""
    bench = Bench()
    send = Send(1, flags=DMA, length=0, local_va=0xDEAD_B028)

    async def user(ctx):
        await bench.check(ctx, send)

    bench.run(user)
    assert bench.at("offered")[0] + 1 == bench.at("planned")[0]
    plan, = bench.plans()
    assert (plan["dma"], plan["offset"], plan["header"]["length"]) == (1, 0x028, 0)
    assert not bench.lookups and not bench.faults


@pytest.mark.parametrize("flags", [0, DMA], ids=["pio", "dma"])
def test_the_plan_is_held_until_taken_and_the_send_taken_with_it(flags):
    """A fetcher that takes the plan 7 cycles late: the plan is offered at every edge from the
    first, unchanged, and the send is taken only with it."""
    bench = Bench(plan_wait=7)
    send = Send(2, flags=flags, length=64, local_va=0x5000, asid=1)
    bench.map_pages(1, 0x5000, 1, first_ppn=0x77)

    async def user(ctx):
        await bench.check(ctx, send)

    bench.run(user)
    first = bench.at("plan")[0]
    assert bench.at("plan") == list(range(first, first + 8))
    assert bench.at("planned") == bench.at("taken") == [first + 7]
    assert len({bench.log[edge]["plan_bits"] for edge in bench.at("plan")}) == 1


# Refusals -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, error", [case[1:] for case in REFUSALS],
                         ids=[case[0] for case in REFUSALS])
def test_bad_descriptor_is_refused_in_the_cycle_it_is_offered(fields, error):
    """Each bad descriptor of the engine's tests: refused with its error (in the contract's
    order) at the first edge the send is offered, the send taken with the refusal; no plan, no
    lookup."""
    bench = Bench(nodes=4)
    send = Send(3, **fields)

    async def user(ctx):
        await bench.check(ctx, send)

    bench.run(user)
    assert bench.at("refused") == bench.at("taken") == [bench.at("offered")[0]]
    assert bench.log[bench.at("refused")[0]]["error"] == error.value
    assert not bench.at("plan") and not bench.lookups


def test_every_destination_is_good_in_a_system_of_16_nodes():
    bench = Bench(nodes=16)
    send = Send(0, dst_node=15, length=8)

    async def user(ctx):
        await bench.check(ctx, send)

    bench.run(user)
    assert not bench.at("refused") and bench.plans()[0]["header"]["dst_node"] == 15


# DMA translation ----------------------------------------------------------------------------------

def test_dma_one_page_looked_up_from_the_next_cycle_then_planned():
    """A DMA payload in one page: its page looked up from the edge after the send is offered, in
    the send's ASID; planned from the edge after the HIT, with the frame."""
    bench = Bench()
    send = Send(4, flags=DMA, length=64, local_va=0x12_3F88, asid=9)
    bench.map_pages(9, 0x12_3000, 1, first_ppn=0x456)

    async def user(ctx):
        await bench.check(ctx, send)

    bench.run(user)
    offered = bench.at("offered")[0]
    assert bench.at("lookup")[0] == offered + 1 and len(bench.at("lookup")) == 1
    assert [(asid, va) for _, asid, va in bench.lookups] == [(9, 0x12_3000)]
    assert bench.at("plan")[0] == bench.at("answer")[0] + 1
    plan, = bench.plans()
    assert (plan["dma"], plan["offset"], plan["ppn"]) == (1, 0xF88, 0x456)
    assert plan["header"] == bench.header(send)


@pytest.mark.parametrize("local_va, length, pages", [
    (0x12_3000 + 0x1000 - 40, 40, 1),       # the payload's last byte is the page's last
    (0x12_3000 + 0x1000 - 40, 48, 2),       # one word more runs into the next page
    (0x12_3000 + 0xFFF, 8, 1),              # the low three bits ignored: the page's last word
    (0x12_3000 + 0xFFF, 16, 2),
    (0x12_3000, 2048, 1),
    (0x12_3000 + 0x808, 2048, 2),
])
def test_dma_payload_running_into_the_next_page_looks_it_up_too(local_va, length, pages):
    """The next page is looked up exactly when the payload runs into it; its frame is
    ``next_ppn``."""
    bench = Bench()
    send = Send(1, flags=DMA, length=length, local_va=local_va, asid=2)
    bench.map_pages(2, 0x12_3000, 2, first_ppn=0x80)

    async def user(ctx):
        await bench.check(ctx, send)

    bench.run(user)
    assert [va for _, _, va in bench.lookups] == [0x12_3000, 0x12_4000][:pages]
    plan, = bench.plans()
    assert plan["ppn"] == 0x80 and (pages == 1 or plan["next_ppn"] == 0x81)


def test_dma_miss_is_reported_then_every_page_looked_up_again():
    """A miss on the second page: a TX_MISS fault naming the endpoint, ASID, page and node; after
    the OS fills and answers retry, both pages again, then the plan. Counted."""
    bench = Bench(node=3)
    send = Send(6, flags=DMA, length=256, local_va=0x8_0F80, asid=4)
    bench.tlb[(4, 0x80)] = 0x20
    bench.pending_fills[(4, 0x81)] = 0x99
    bench.miss_answers.append("fill")

    async def user(ctx):
        await bench.check(ctx, send)

    bench.run(user)
    assert bench.faults == [{"kind": NiFaultKind.TX_MISS, "endpoint": 6, "asid": 4,
                             "va": 0x8_1000, "node": 3}]
    assert [va for _, _, va in bench.lookups] == [0x8_0000, 0x8_1000, 0x8_0000, 0x8_1000]
    assert bench.at("lookup")[2] == bench.at("miss_answer")[0] + 1
    plan, = bench.plans()
    assert (plan["ppn"], plan["next_ppn"]) == (0x20, 0x99)
    assert bench.log[-1]["misses"] == 1 and not bench.at("refused")


def test_dma_miss_rejected_is_refused_as_the_answer_is_taken():
    bench = Bench()
    send = Send(1, flags=DMA, length=64, local_va=0x3000, asid=6)
    bench.miss_answers.append("reject")

    async def user(ctx):
        await bench.check(ctx, send)

    bench.run(user)
    assert [fault["kind"] for fault in bench.faults] == [NiFaultKind.TX_MISS]
    assert bench.at("refused") == bench.at("taken") == bench.at("miss_answer")
    assert bench.log[bench.at("refused")[0]]["error"] == TxError.DMA_REJECTED.value
    assert not bench.at("plan")


def test_dma_permission_fault_is_refused_as_the_fault_is_taken():
    """A page without local read: TX_PERMISSION for that page, and DMA_FAULT at the edge that
    takes the fault; no answer is waited for."""
    bench = Bench(node=2)
    send = Send(0, flags=DMA, length=64, local_va=0x40_0FF0, asid=3)
    bench.tlb[(3, 0x400)] = 0x11
    bench.tlb[(3, 0x401)] = "no_read"

    async def user(ctx):
        await bench.check(ctx, send)

    bench.run(user)
    assert bench.faults == [{"kind": NiFaultKind.TX_PERMISSION, "endpoint": 0, "asid": 3,
                             "va": 0x40_1000, "node": 2}]
    assert bench.at("refused") == bench.at("taken") == bench.at("fault")
    assert bench.log[bench.at("refused")[0]]["error"] == TxError.DMA_FAULT.value
    assert not bench.at("plan") and not bench.at("miss_answer")
    assert bench.log[-1]["misses"] == 0


def test_sends_one_after_another_each_start_afresh():
    """A two-page DMA send, a refused one, a PIO one and a one-page DMA send back to back: each
    looked up from its first page, each planned or refused once, in order."""
    bench = Bench()
    bench.map_pages(1, 0x10_0000, 3, first_ppn=0x300)
    sends = [Send(0, flags=DMA, length=512, local_va=0x10_0F00, asid=1),
             Send(1, length=12),
             Send(2, length=24),
             Send(3, flags=DMA, length=16, local_va=0x10_2010, asid=1)]

    async def user(ctx):
        for seq, send in enumerate(sends):
            await bench.check(ctx, send, seq=seq)

    bench.run(user)
    assert [va for _, _, va in bench.lookups] == [0x10_0000, 0x10_1000, 0x10_2000]
    assert len(bench.at("taken")) == 4 and len(bench.at("refused")) == 1
    first, pio, last = bench.plans()
    assert [plan["header"]["seq"] for plan in (first, pio, last)] == [0, 2, 3]
    assert (first["ppn"], first["next_ppn"], pio["dma"], last["ppn"]) == (0x300, 0x301, 0, 0x302)


# Parameters and the node strap --------------------------------------------------------------------

def test_node_number_comes_in_on_the_strap_port_when_not_built_in():
    bench = Bench(node=None)
    send = Send(0, flags=DMA, length=8, local_va=0x7000, asid=1)
    bench.miss_answers.append("reject")

    async def user(ctx):
        ctx.set(bench.dut.node_id, 13)
        await bench.check(ctx, Send(1, length=8))
        await bench.check(ctx, send)

    bench.run(user)
    assert bench.plans()[0]["header"]["src_node"] == 13 and bench.faults[0]["node"] == 13


@pytest.mark.parametrize("params, error, text", [
    (dict(node=16), ValueError, "node must be between 0 and 15, not 16"),
    (dict(nodes=17), ValueError, "nodes must be between 2 and 16, not 17"),
    (dict(asid_bits=17), ValueError, "asid_bits must be between 1 and 16, not 17"),
    (dict(nodes=2.0), TypeError, "nodes must be an integer, not 2.0"),
])
def test_bad_parameters_raise_naming_themselves(params, error, text):
    with pytest.raises(error, match=text):
        SendChecker(**params)


def test_default_parameters_and_widths():
    checker = SendChecker()
    assert (checker.node, checker.nodes, checker.asid_bits) == (0, 2, 8)
    assert "node_id" not in checker.signature.members and len(checker.count_misses) == 32
    narrow = SendChecker(asid_bits=3)
    assert len(narrow.tlb_request.payload.asid) == len(narrow.fault.payload.asid) - 5 == 3
    silence_unused(checker)
    silence_unused(narrow)


def test_the_stall_report_names_the_states_in_their_encoding_order():
    assert fsm_states(SendChecker(), "check") == STATES
