"""Shared helpers for unit tests in the Amaranth simulator."""

import gc
from collections import Counter

from amaranth.hdl import Value
from amaranth.sim import Simulator

__all__ = ["run", "stream_put", "stream_get", "stream_put_together", "transfer", "tracer", "edges",
           "OneAtATime"]


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


class OneAtATime:
    """A component with registered outputs driven one input at a time, its outputs always ready.

    :meth:`outputs` returns what the outputs ``names`` carried at the edge after an input was
    taken; a monitor counts every output transfer, so that :meth:`run` can check that nothing
    came out at another time. Subclasses add the inputs.
    """

    def __init__(self, dut, names, *, deadline_cycles):
        self.dut = dut
        self.names = tuple(names)
        self.deadline_cycles = deadline_cycles
        self.seen, self.returned = Counter(), Counter()

    def run(self, *testbenches, deadline_cycles=None, check=True):
        """Simulate; with ``check``, every output must have come from an input's result (a test
        that also offers inputs itself leaves it off)."""
        run(self.dut, *testbenches, self._monitor,
            deadline_cycles=deadline_cycles or self.deadline_cycles)
        if check:
            assert self.seen == self.returned, "an output came at an unexpected edge"

    async def _monitor(self, ctx):
        for name in self.names:
            ctx.set(getattr(self.dut, name).ready, 1)
        async for _, _, *taken in ctx.tick().sample(*(transfer(getattr(self.dut, name))
                                                      for name in self.names)):
            self.seen.update(name for name, flag in zip(self.names, taken) if flag)

    async def outputs(self, ctx):
        """Wait an edge; return ``{name: payload bits, or None if not valid}``."""
        ports = [getattr(self.dut, name) for name in self.names]
        _, _, *values = await ctx.tick().sample(*(x for port in ports
                                                  for x in (port.valid, Value.cast(port.payload))))
        result = {name: payload if valid else None
                  for name, valid, payload in zip(self.names, values[0::2], values[1::2])}
        self.returned.update(name for name, bits in result.items() if bits is not None)
        return result
