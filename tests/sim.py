"""Shared helpers for unit tests in the Amaranth simulator."""

from amaranth.hdl import Value
from amaranth.sim import Simulator

__all__ = ["run", "stream_put", "stream_get"]


def run(dut, *testbenches, deadline_cycles=100_000):
    """Simulate ``dut`` with a 1 MHz clock and the given async testbenches."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    sim.run_until(deadline_cycles * 1e-6)


async def stream_put(ctx, stream, payload):
    """Offer ``payload`` (an integer, or what its shape accepts) until the sink takes it."""
    ctx.set(stream.valid, 1)
    ctx.set(Value.cast(stream.payload) if isinstance(payload, int) else stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one payload from ``stream``."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload
