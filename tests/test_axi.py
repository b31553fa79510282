"""Unit tests of the parts of the NI's AXI shell (rtl/axi.py) in the Amaranth simulator: the
AXI4-Lite target (a write taken whichever of its address and data comes first, a read, the
answer's error as SLVERR, one access at a time) and the user pages' bridge to the NI's MMIO port
(what it refuses itself). The shell as a whole runs under cocotbext-axi
(tests/test_axi_cocotb.py)."""

import pytest

from rtl.axi import AxiLiteTarget, UserPageBridge
from rtl.layouts import AxiResp, MmioStatus
from tests.sim import run, stream_get, stream_put, waiting

DEADLINE = 200


def axil(dut):
    return lambda name: getattr(dut, f"axil_{name}")


async def write(ctx, dut, addr, data, strb, *, data_first):
    """Drive one write, its address and data in the order asked; return its response."""
    port = axil(dut)
    channels = [("w", {"wdata": data, "wstrb": strb}), ("aw", {"awaddr": addr})]
    for channel, fields in channels if data_first else reversed(channels):
        for name, value in fields.items():
            ctx.set(port(name), value)
        ctx.set(port(f"{channel}valid"), 1)
        with waiting(ctx, f"{channel}ready"):
            await ctx.tick().until(port(f"{channel}ready"))
        ctx.set(port(f"{channel}valid"), 0)
        await ctx.tick().repeat(2)
    ctx.set(port("bready"), 1)
    with waiting(ctx, "bvalid"):
        resp, = await ctx.tick().sample(port("bresp")).until(port("bvalid"))
    ctx.set(port("bready"), 0)
    return AxiResp(resp)


async def read(ctx, dut, addr):
    """Drive one read; return its response and data."""
    port = axil(dut)
    ctx.set(port("araddr"), addr)
    ctx.set(port("arvalid"), 1)
    with waiting(ctx, "arready"):
        await ctx.tick().until(port("arready"))
    ctx.set(port("arvalid"), 0)
    ctx.set(port("rready"), 1)
    with waiting(ctx, "rvalid"):
        resp, data = await ctx.tick().sample(port("rresp"), port("rdata")).until(port("rvalid"))
    ctx.set(port("rready"), 0)
    return AxiResp(resp), data


@pytest.mark.parametrize("data_first", [False, True])
def test_write_then_read(data_first):
    """A write goes out once both its halves are in, a read after it; each answer comes back as
    the response, an error as SLVERR."""
    dut = AxiLiteTarget(addr_width=12)
    seen, answers = [], []

    async def bus(ctx):
        answers.append(await write(ctx, dut, 0x0A8, 0x1122_3344_5566_7788, 0xF0,
                                   data_first=data_first))
        answers.append(await read(ctx, dut, 0x010))

    async def target(ctx):
        for error, data in ((1, 0), (0, 0xDEAD_BEEF)):
            access = await stream_get(ctx, dut.request)
            seen.append((access.write, access.addr, access.data, access.strb))
            await ctx.tick().repeat(3)
            await stream_put(ctx, dut.answer, {"error": error, "data": data})

    run(dut, bus, target, deadline_cycles=DEADLINE)
    assert seen == [(1, 0x0A8, 0x1122_3344_5566_7788, 0xF0), (0, 0x010, 0, 0)]
    assert answers == [AxiResp.SLVERR, (AxiResp.OKAY, 0xDEAD_BEEF)]


def test_one_access_at_a_time():
    """While an access waits for its answer, no address of another is taken."""
    dut = AxiLiteTarget(addr_width=12)
    readies = []

    async def bus(ctx):
        port = axil(dut)
        ctx.set(port("araddr"), 0x008)
        ctx.set(port("arvalid"), 1)
        await ctx.tick().until(port("arready"))
        # (the read is in; a write and a second read are offered while it is answered)
        ctx.set(port("awvalid"), 1)
        for _ in range(6):
            *_, aw_ready, ar_ready = await ctx.tick().sample(port("awready"), port("arready"))
            readies.append((aw_ready, ar_ready))
        ctx.set(port("awvalid"), 0)
        ctx.set(port("arvalid"), 0)

    async def target(ctx):
        await stream_get(ctx, dut.request)
        await ctx.tick().repeat(8)
        await stream_put(ctx, dut.answer, {"error": 0, "data": 1})

    run(dut, bus, target, deadline_cycles=DEADLINE)
    assert readies == [(0, 0)] * 6


def test_address_width_is_checked():
    with pytest.raises(ValueError, match="addr_width must be between 3 and 48, not 2"):
        AxiLiteTarget(addr_width=2)


def test_user_bridge_refuses_what_the_ni_must_not_see():
    """A write with strobes missing and an address that is not a whole word are answered with an
    error and never offered to the NI; an access is the MMIO request of the ASID above the pages,
    its answer an error unless OK, a refused read's data 0."""
    dut = UserPageBridge(asid_bits=4)
    answers, requests = [], []

    async def bus(ctx):
        for write, addr, strb in ((1, 0x3_1030, 0x0F), (0, 0x3_1034, 0), (1, 0x3_1030, 0xFF),
                                  (0, 0x5_2028, 0), (0, 0x5_2028, 0)):
            await stream_put(ctx, dut.access, {"write": write, "addr": addr, "data": 7 * write,
                                               "strb": strb})
            answer = await stream_get(ctx, dut.answer)
            answers.append((answer.error, answer.data))

    async def ni(ctx):
        for status in (MmioStatus.OK, MmioStatus.OK, MmioStatus.FOREIGN_ASID):
            request = await stream_get(ctx, dut.cpu_request)
            requests.append((request.write, request.asid, request.addr, request.data))
            await stream_put(ctx, dut.cpu_response, {"status": status, "data": 0x55})

    run(dut, bus, ni, deadline_cycles=DEADLINE)
    assert requests == [(1, 3, 0x1030, 7), (0, 5, 0x2028, 0), (0, 5, 0x2028, 0)]
    assert answers == [(1, 0), (1, 0), (0, 0x55), (0, 0x55), (1, 0)]
