"""Shared helpers for unit tests in the Amaranth simulator.

Every testbench given to :func:`run` must finish by the deadline, or the test fails naming what
it still waits for; a testbench that runs until the deadline by design (a monitor, a consumer
always ready, a model of memory) is marked :func:`background`."""

import gc
import os
import weakref
from collections import Counter
from contextlib import contextmanager

import amaranth
from amaranth.hdl import Fragment, Value
from amaranth.sim import Simulator

__all__ = ["run", "background", "waiting", "stream_put", "stream_get", "stream_put_together",
           "transfer", "tracer", "edges", "fsm_states", "OneAtATime"]

_AMARANTH = os.path.dirname(amaranth.__file__) + os.sep

#: What the testbench of each simulator context waits for, innermost last (see :func:`waiting`).
_waits = weakref.WeakKeyDictionary()


def run(dut, *testbenches, deadline_cycles=100_000):
    """Simulate ``dut`` with a 1 MHz clock and the given async testbenches (run in that order
    within a time step) for ``deadline_cycles`` cycles.

    Fail if a testbench not marked :func:`background` has not finished by then, naming it, the
    line it waits at and (if it waits in a helper of this module, or in :func:`waiting`) what it
    waits for."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    unfinished = {}
    for index, testbench in enumerate(testbenches):
        if getattr(testbench, "background", False):
            sim.add_testbench(testbench, background=True)
        else:
            sim.add_testbench(_watched(testbench, index, unfinished))
    sim.run_until(deadline_cycles * 1e-6)
    hung = [_hang(name, *state) for name, state in unfinished.items()]
    # A testbench still waiting at the deadline (say in ``until``: the design stopped taking its
    # stream) must be closed. Close it here: closed inside ``until`` it raises RuntimeError (the
    # ``sample`` generator that ``until`` closes is still running), which the garbage collector
    # would print as an unraisable exception. Collect the rest now: collected later, in the middle
    # of pytest's report of the failure, a testbench makes Python 3.11's ``ast.parse`` fail
    # (gh-106905) and pytest stop with an INTERNALERROR instead of the test's failure. (So nothing
    # here may keep one: ``hung`` holds strings only.)
    for _, coroutine in unfinished.values():
        try:
            coroutine.close()
        except RuntimeError:
            pass
    del sim, unfinished
    gc.collect()
    assert not hung, f"not finished after {deadline_cycles} cycles: " + "; ".join(hung)


def background(testbench):
    """Mark ``testbench`` (a function or method; returned) as one that runs until the deadline
    by design: :func:`run` does not wait for it to finish."""
    testbench.background = True
    return testbench


@contextmanager
def waiting(ctx, what):
    """Say what the testbench of ``ctx`` waits for inside the ``with`` block (``what`` completes
    "waiting for ..."): :func:`run` says it if the testbench is still there at the deadline."""
    stack = _waits.setdefault(ctx, [])
    stack.append(what)
    try:
        yield
    finally:
        stack.pop()


def _watched(testbench, index, unfinished):
    """Wrap ``testbench`` so that it is in ``unfinished``, with its context and coroutine, from
    its start until it returns."""
    name = f"testbench {index} ({testbench.__qualname__.replace('.<locals>', '')})"

    async def watched(ctx):
        coroutine = testbench(ctx)
        unfinished[name] = ctx, coroutine
        await coroutine
        del unfinished[name]
    return watched


def _hang(name, ctx, coroutine):
    """Describe where testbench ``name`` waits: its awaits outside Amaranth, outermost first."""
    lines = []
    while getattr(coroutine, "cr_frame", None) is not None:
        code = coroutine.cr_frame.f_code
        if not code.co_filename.startswith(_AMARANTH):
            lines.append(f"{os.path.relpath(code.co_filename)}:{coroutine.cr_frame.f_lineno} "
                         f"in {code.co_name}")
        coroutine = coroutine.cr_await
    waits = _waits.get(ctx)
    return f"{name} at {' -> '.join(lines)}" + (f", waiting for {waits[-1]}" if waits else "")


def _port(stream):
    """The name of ``stream`` as a port of its component (``tx_request``), for messages."""
    return stream.valid.name.removesuffix("__valid")


def _shown(payload):
    return f"{payload:#x}" if isinstance(payload, int) else repr(payload)


async def stream_put(ctx, stream, payload):
    """Offer ``payload`` (an integer, or what its shape accepts) until the sink takes it."""
    ctx.set(stream.valid, 1)
    ctx.set(Value.cast(stream.payload) if isinstance(payload, int) else stream.payload, payload)
    with waiting(ctx, f"{_port(stream)} to take {_shown(payload)}"):
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one payload from ``stream``."""
    ctx.set(stream.ready, 1)
    with waiting(ctx, f"{_port(stream)} to be valid"):
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
        left = [f"{_port(stream)} to take {_shown(payload)}"
                for (stream, payload), wait in zip(offers, waited) if wait is None]
        with waiting(ctx, " and ".join(left)):
            _, _, *readies = await ctx.tick().sample(*(stream.ready for stream, _ in offers))
        for index, ((stream, _), ready) in enumerate(zip(offers, readies)):
            if waited[index] is None and ready:
                waited[index] = edge
                ctx.set(stream.valid, 0)
    return waited


def transfer(stream):
    """Return the expression that holds at a clock edge where ``stream`` transfers a payload."""
    return stream.valid & stream.ready


def tracer(log, *, until=None, **exprs):
    """Return a background testbench appending to ``log``, at every clock edge, a dict of the
    values that ``exprs`` have at that edge (as :meth:`ctx.tick().sample` sees them); it stops
    after the first edge at which ``until`` (a function, if given) returns true."""
    @background
    async def testbench(ctx):
        async for _, _, *values in ctx.tick().sample(*exprs.values()):
            log.append(dict(zip(exprs, values)))
            if until is not None and until():
                return
    return testbench


def edges(log, name):
    """Return the clock edges (indices into a :func:`tracer` log) at which ``name`` held."""
    return [edge for edge, row in enumerate(log) if row[name]]


def fsm_states(component, name):
    """Return the states of the ``m.FSM`` called ``name`` in ``component``'s own module, in the
    order of their encoding (what a report that reads the state register from the Verilog needs
    to name them)."""
    fragment = Fragment.get(component, None)
    for statements in fragment.statements.values():
        for statement in statements:
            state = getattr(statement, "test", None)
            if getattr(state, "name", None) == f"{name}_state":
                names = []
                # (the state register's decoder names each encoding "NAME/value")
                for value in range(1 << len(state)):
                    try:
                        names.append(state.decoder(value).rsplit("/", 1)[0])
                    except KeyError:
                        break
                return tuple(names)
    raise ValueError(f"{type(component).__name__} has no FSM called {name!r}")


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

    @background
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
