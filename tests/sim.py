"""Shared helpers for unit tests in the Amaranth simulator."""

import gc

from amaranth.hdl import Value
from amaranth.sim import Simulator

__all__ = ["run", "stream_put", "stream_get", "stream_put_together", "transfer", "tracer", "edges"]


def run(dut, *testbenches, deadline_cycles=100_000):
    """Simulate ``dut`` with a 1 MHz clock and the given async testbenches."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    sim.run_until(deadline_cycles * 1e-6)
    # A testbench still waiting at the deadline (say in ``until``: the design stopped taking its
    # stream) is closed when it is collected. Collect it now: collected later, in the middle of
    # pytest's report of the failure, it makes Python 3.11's ``ast.parse`` fail (gh-106905) and
    # pytest stop with an INTERNALERROR instead of the test's failure.
    del sim
    gc.collect()


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


async def stream_put_together(ctx, *offers):
    """Offer each ``(stream, payload)`` of ``offers`` at once, each until its sink takes it.

    Return, for each offer, the clock edges it waited: 1 if taken at the first edge."""
    for stream, payload in offers:
        ctx.set(stream.valid, 1)
        ctx.set(Value.cast(stream.payload) if isinstance(payload, int) else stream.payload,
                payload)
    waited = [None] * len(offers)
    edge = 0
    while None in waited:
        edge += 1
        _, _, *readies = await ctx.tick().sample(*(stream.ready for stream, _ in offers))
        for index, ((stream, _), ready) in enumerate(zip(offers, readies)):
            if waited[index] is None and ready:
                waited[index] = edge
                ctx.set(stream.valid, 0)
    return waited


def transfer(stream):
    """Return the expression that holds at a clock edge where ``stream`` transfers a payload."""
    return stream.valid & stream.ready


def tracer(log, **exprs):
    """Return a testbench appending to ``log``, at every clock edge, a dict of the values that
    ``exprs`` have at that edge (as :meth:`ctx.tick().sample` sees them)."""
    async def testbench(ctx):
        async for _, _, *values in ctx.tick().sample(*exprs.values()):
            log.append(dict(zip(exprs, values)))
    return testbench


def edges(log, name):
    """Return the clock edges (indices into a :func:`tracer` log) at which ``name`` held."""
    return [edge for edge, row in enumerate(log) if row[name]]
