"""Unit tests of the RX engine's translator (rtl/translator.py) in the Amaranth simulator, with a
fake NI TLB that answers each lookup ``latency`` cycles after taking it."""

from collections import deque

import pytest
from amaranth.hdl import Value

from rtl.layouts import (PAGE_BITS, RxTranslation, TlbResponse, TlbStatus, codec,
                         rx_lookup_layout, tlb_lookup_layout)
from rtl.params import silence_unused
from rtl.translator import RxTranslator
from tests.sim import background, edges, run, stream_put, tracer, transfer

PAGE = 1 << PAGE_BITS
ASID, KEY = 0x5a, 0x1234


def ppn_of(va):
    return (0x40000 + (va >> PAGE_BITS) * 7) & 0xfffff


class Bench:
    """The translator with a fake NI TLB: ``answer(va)`` gives each lookup's status (HIT unless
    said), answered ``latency`` cycles after the edge it is taken at, the TLB ready for a lookup
    at edges where ``tlb_ready(edge)``. ``log`` holds every edge's handshakes and translation."""

    def __init__(self, *, answer=None, latency=2, tlb_ready=None, asid_bits=8):
        self.dut = RxTranslator(asid_bits=asid_bits)
        self.answer = answer or (lambda va: TlbStatus.HIT)
        self.latency = latency
        self.tlb_ready = tlb_ready or (lambda edge: True)
        self.lookups = []           # (edge, lookup fields)
        self.log = []

    async def request(self, ctx, va, length, asid=ASID, key=KEY):
        await stream_put(ctx, self.dut.request, codec(rx_lookup_layout(8)).pack(
            asid=asid, key=key, va=va, length=length))

    @background
    async def tlb(self, ctx):
        dut = self.dut
        pending = deque()
        edge = 0
        ctx.set(dut.tlb_request.ready, self.tlb_ready(0))
        async for _, _, taken, payload in ctx.tick().sample(
                transfer(dut.tlb_request), Value.cast(dut.tlb_request.payload)):
            if taken:
                fields = codec(tlb_lookup_layout(8)).unpack(payload)
                self.lookups.append((edge, fields))
                status = self.answer(fields["va"])
                ppn = ppn_of(fields["va"]) if status == TlbStatus.HIT else 0
                pending.append((edge + self.latency, codec(TlbResponse).pack(status=status,
                                                                             ppn=ppn)))
            edge += 1
            due = bool(pending) and pending[0][0] <= edge
            if due:
                _, bits = pending.popleft()
            ctx.set(dut.tlb_response.valid, due)
            ctx.set(Value.cast(dut.tlb_response.payload), bits if due else 0)
            ctx.set(dut.tlb_request.ready, self.tlb_ready(edge))

    def run(self, user, cycles=200):
        dut = self.dut
        watch = tracer(self.log, requested=transfer(dut.request), ready=dut.request.ready,
                       answer=dut.tlb_response.valid,
                       translation=Value.cast(dut.translation))
        run(dut, self.tlb, watch, user, deadline_cycles=cycles)

    def translation(self, edge):
        return codec(RxTranslation).unpack(self.log[edge]["translation"])

    def first_done(self):
        """The first edge, after the request, at which the translation was done."""
        start = edges(self.log, "requested")[-1]
        return next(edge for edge in range(start + 1, len(self.log))
                    if self.translation(edge)["done"])


def test_one_page_is_looked_up_the_cycle_after_the_request_and_done_with_its_answer():
    """A payload within a page: one lookup in the request's ASID with its key, for the page, at
    the edge after the request; the translation is done in the cycle the answer arrives."""
    bench = Bench()
    va = 0x1000_0008

    async def user(ctx):
        await bench.request(ctx, va, 64)
        await ctx.tick().repeat(6)

    bench.run(user)
    requested, = edges(bench.log, "requested")
    (edge, lookup), = bench.lookups
    assert edge == requested + 1
    assert lookup == dict(asid=ASID, key=KEY, va=va & ~(PAGE - 1))
    answered, = edges(bench.log, "answer")
    assert bench.first_done() == answered
    assert not bench.translation(answered - 1)["done"]
    result = bench.translation(answered)
    assert (result["status"], result["ppn"][0]) == (TlbStatus.HIT, ppn_of(va))


def test_two_pages_are_looked_up_in_order_one_a_cycle():
    """An unaligned payload crossing a page: both pages, in consecutive cycles; each frame kept."""
    bench = Bench()
    va = 0x2000_0ff3        # the low 3 bits ignored: 0xff0, 24 words up to 0x10b0

    async def user(ctx):
        await bench.request(ctx, va, 192)
        await ctx.tick().repeat(8)

    bench.run(user)
    requested, = edges(bench.log, "requested")
    assert [(edge - requested, lookup["va"]) for edge, lookup in bench.lookups] == [
        (1, 0x2000_0000), (2, 0x2000_1000)]
    done = bench.first_done()
    for edge in (done, done + 3):       # (held until the next request)
        result = bench.translation(edge)
        assert result["ppn"] == {0: ppn_of(0x2000_0000), 1: ppn_of(0x2000_1000)}
        assert result["status"] == TlbStatus.HIT


@pytest.mark.parametrize("va, length, pages", [
    (0x3000_0f00, 0x100, 1),        # ends at its page's end
    (0x3000_0f00, 0x108, 2),
    (0x3000_0007, 0, 0),            # no payload: nothing to look up
    (0x3000_0000, 2048, 1),
])
def test_the_pages_looked_up_are_those_the_payload_spans(va, length, pages):
    bench = Bench()

    async def user(ctx):
        await bench.request(ctx, va, length)
        await ctx.tick().repeat(8)

    bench.run(user)
    assert [lookup["va"] for _, lookup in bench.lookups] == [
        (va & ~(PAGE - 1)) + PAGE * page for page in range(pages)]
    requested, = edges(bench.log, "requested")
    # (ready again at once for a request of no pages, else not before its answers)
    assert bench.log[requested + 1]["ready"] == (pages == 0)
    if pages == 0:
        assert bench.translation(requested + 1)["done"]


@pytest.mark.parametrize("refused, status, va", [
    ({0: TlbStatus.PERMISSION_FAULT, 1: TlbStatus.MISS}, TlbStatus.PERMISSION_FAULT, 0x4000_0000),
    ({1: TlbStatus.KEY_FAULT}, TlbStatus.KEY_FAULT, 0x4000_1000),
    ({0: TlbStatus.MISS}, TlbStatus.MISS, 0x4000_0000),
], ids=["first-decides", "second", "miss"])
def test_the_first_page_not_hit_decides(refused, status, va):
    bench = Bench(answer=lambda page: refused.get((page >> PAGE_BITS) & 1, TlbStatus.HIT))

    async def user(ctx):
        await bench.request(ctx, 0x4000_0800, 0x900)
        await ctx.tick().repeat(8)

    bench.run(user)
    done = bench.first_done()
    # (in the answer's cycle, and held after it until the next request)
    for edge in (done, done + 1, done + 4):
        result = bench.translation(edge)
        assert (result["done"], result["status"], result["va"]) == (1, status, va), edge


def test_a_page_of_the_request_before_counts_for_nothing():
    """A request of two pages whose second was refused, then one of a page that hits: the
    second translation is HIT (the refused answer it holds for its second page is not its), and
    done in its answer's cycle."""
    bench = Bench(answer=lambda page: TlbStatus.KEY_FAULT if page == 0x6000_1000
                  else TlbStatus.HIT)

    async def user(ctx):
        await bench.request(ctx, 0x6000_0f00, 0x200)
        await ctx.tick().repeat(6)
        await bench.request(ctx, 0x6000_0000, 0x40)
        await ctx.tick().repeat(6)

    bench.run(user)
    answers = edges(bench.log, "answer")
    assert len(answers) == 3
    assert bench.first_done() == answers[2]
    assert bench.translation(answers[1])["status"] == TlbStatus.KEY_FAULT
    assert bench.translation(answers[2])["status"] == TlbStatus.HIT


def test_not_ready_while_lookups_are_outstanding_and_a_request_again_looks_up_again():
    """The TLB takes lookups only every third cycle: the translator is not ready for a request
    from the one taken until the last answer, and is ready in the cycle after it; the same
    request offered again looks both pages up again."""
    bench = Bench(tlb_ready=lambda edge: edge % 3 == 0, latency=3)
    va = 0x5000_0f80

    async def user(ctx):
        await bench.request(ctx, va, 0x100)
        await bench.request(ctx, va, 0x100)
        await ctx.tick().repeat(12)

    bench.run(user)
    first, second = edges(bench.log, "requested")
    answers = edges(bench.log, "answer")
    assert len(bench.lookups) == 4 and len(answers) == 4
    assert second == answers[1] + 1
    assert all(not bench.log[edge]["ready"] for edge in range(first + 1, answers[1] + 1))
    assert [lookup["va"] for _, lookup in bench.lookups] == [0x5000_0000, 0x5000_1000] * 2


def test_parameter_errors_name_the_parameter():
    with pytest.raises(ValueError, match="^asid_bits must be between 1 and 16, not 17$"):
        RxTranslator(asid_bits=17)
    with pytest.raises(TypeError, match="^asid_bits must be an integer, not '8'$"):
        RxTranslator(asid_bits="8")


def test_parameters_are_kept():
    translator, default = RxTranslator(asid_bits=12), RxTranslator()
    assert translator.asid_bits == 12 and len(translator.tlb_request.payload.asid) == 12
    assert default.asid_bits == 8
    silence_unused(translator)
    silence_unused(default)
