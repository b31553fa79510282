import pytest

from rtl.arbiter import RoundRobinArbiter
from tests.sim import run


def test_rejects_bad_count():
    with pytest.raises(ValueError, match="count must be between 2 and 64, not 1"):
        RoundRobinArbiter(count=1)


def test_rotates_among_requesters():
    dut = RoundRobinArbiter(count=4)
    grants = []

    async def bench(ctx):
        ctx.set(dut.requests, 0b1011)
        ctx.set(dut.advance, 1)
        for _ in range(6):
            grants.append(ctx.get(dut.grant))
            await ctx.tick()

    run(dut, bench)
    assert grants == [0, 1, 3, 0, 1, 3]


def test_holds_grant_until_advanced():
    dut = RoundRobinArbiter(count=3)
    seen = []

    async def bench(ctx):
        ctx.set(dut.requests, 0b111)
        for _ in range(3):
            seen.append((ctx.get(dut.valid), ctx.get(dut.grant)))
            await ctx.tick()
        ctx.set(dut.advance, 1)
        await ctx.tick()
        ctx.set(dut.advance, 0)
        seen.append((ctx.get(dut.valid), ctx.get(dut.grant)))
        ctx.set(dut.requests, 0)
        seen.append((ctx.get(dut.valid), None))

    run(dut, bench)
    assert seen == [(1, 0), (1, 0), (1, 0), (1, 1), (0, None)]


@pytest.mark.parametrize("count", [2, 5, 16])
def test_every_requester_served_within_count_grants(count):
    dut = RoundRobinArbiter(count=count)
    grants = []

    async def bench(ctx):
        ctx.set(dut.requests, (1 << count) - 1)
        ctx.set(dut.advance, 1)
        for _ in range(3 * count):
            grants.append(ctx.get(dut.grant))
            await ctx.tick()

    run(dut, bench)
    for start in range(len(grants) - count + 1):
        assert sorted(grants[start:start + count]) == list(range(count))


import gc
import warnings

from amaranth.hdl import Fragment, Shape, UnusedElaboratable


def test_default_count_and_port_widths():
    arbiter = RoundRobinArbiter()
    assert arbiter.count == 4
    assert {name: Shape.cast(member.shape) for name, member in arbiter.signature.members.items()} \
        == {"requests": Shape(4), "grant": Shape(2), "valid": Shape(1), "advance": Shape(1)}
    Fragment.get(arbiter, None)


def test_rejected_parameters_leave_no_unused_elaboratable_warning():
    Fragment.get(RoundRobinArbiter(), None)     # Amaranth warns only once one was elaborated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError):
            RoundRobinArbiter(count=1)
        gc.collect()
    assert not [warning for warning in caught if warning.category is UnusedElaboratable]
