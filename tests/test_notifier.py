"""Unit tests of the notifier (rtl/notifier.py) in the Amaranth simulator, against the
transaction semantics of its specification (/tmp/notes/spec5.md, "Notifier")."""

import random
from collections import Counter

import pytest
from amaranth.hdl import Value

from behavioral.notifier import NotifierModel, NotifierResult
from rtl.layouts import (NOTIFIER_COUNTERS, Completion, HandlerReturn, HandlerReturnOp, LockSignal,
                         NotifierCommandOp, NotifyEvent, NotifyEventKind, NotifyMode, NotifyOsEvent,
                         NotifyOsReason, codec)
from rtl.notifier import Notifier
from rtl.params import silence_unused
from tests.sim import (OneAtATime, background, edges, run, stream_put, stream_put_together, tracer,
                       transfer, waiting)

NONE, LOCK, BRANCH, SPAWN = NotifyMode.NONE, NotifyMode.LOCK, NotifyMode.BRANCH, NotifyMode.SPAWN
RET, EXIT = HandlerReturnOp.RETURN, HandlerReturnOp.EXIT
WRITE_ENDPOINT, WRITE_CONTEXT = NotifierCommandOp.WRITE_ENDPOINT, NotifierCommandOp.WRITE_CONTEXT
NOT_RESIDENT, QUEUE_OVERFLOW = NotifyOsReason.NOT_RESIDENT, NotifyOsReason.QUEUE_OVERFLOW
NO_CONTEXT, BAD_ENDPOINT = NotifyOsReason.NO_CONTEXT, NotifyOsReason.BAD_ENDPOINT
PC, PC2, STACK, LOCK_VA = 0x4000_1000, 0x4000_2000, 0x7FFF_F000, 0x6000_0040
OUTPUTS = ("event", "signal", "os")
# Every directed test is done well before this many cycles.
DEADLINE = 300


def small_notifier(**kwargs):
    return Notifier(**{"endpoints": 2, "contexts": 2, "queue_depth": 2, **kwargs})


def entry(number):
    """The VA of completion entry ``number`` (distinct, and wider than 32 bits)."""
    return 0x1234_0000_0000 | number << 6


def branched(context, thread, endpoint, entry, pc=PC):
    return NotifierResult(event=codec(NotifyEvent).unpack(codec(NotifyEvent).pack(
        kind=NotifyEventKind.BRANCH, context=context, thread=thread, endpoint=endpoint, pc=pc,
        entry=entry)))


def spawned(context, thread, endpoint, entry, evicted=None, pc=PC, sp=STACK):
    return NotifierResult(event=codec(NotifyEvent).unpack(codec(NotifyEvent).pack(
        kind=NotifyEventKind.SPAWN, evict=int(evicted is not None), context=context,
        thread=thread, evicted=evicted or 0, endpoint=endpoint, pc=pc, sp=sp, entry=entry)))


def signalled(asid, addr):
    return NotifierResult(signal=codec(LockSignal).unpack(
        codec(LockSignal).pack(asid=asid, addr=addr)))


def to_os(reason, endpoint, thread, entry):
    return NotifierResult(os_event=codec(NotifyOsEvent).unpack(codec(NotifyOsEvent).pack(
        reason=reason, endpoint=endpoint, thread=thread, entry=entry)))


NOTHING = NotifierResult()


def counts(**nonzero):
    return {name: nonzero.get(name, 0) for name in NOTIFIER_COUNTERS}


class Box(OneAtATime):
    """A Notifier driven one input at a time, its outputs always ready; each input returns, as a
    :class:`behavioral.notifier.NotifierResult`, what the notifier put out at the edge after the
    one that took it (the outputs are registered)."""

    def __init__(self, dut):
        super().__init__(dut, OUTPUTS, deadline_cycles=DEADLINE)
        self.command_codec = codec(dut.command.payload.shape())

    async def _result(self, ctx):
        out = await self.outputs(ctx)
        return NotifierResult(*(codec(layout).unpack(out[name]) if out[name] is not None else None
                                for name, layout in zip(OUTPUTS, (NotifyEvent, LockSignal,
                                                                  NotifyOsEvent))))

    async def completion(self, ctx, endpoint, entry):
        await stream_put(ctx, self.dut.completion,
                         codec(Completion).pack(endpoint=endpoint, entry=entry))
        return await self._result(ctx)

    async def handler_return(self, ctx, op, endpoint=0, context=0):
        await stream_put(ctx, self.dut.handler_return,
                         codec(HandlerReturn).pack(op=op, endpoint=endpoint, context=context))
        return await self._result(ctx)

    async def write_endpoint(self, ctx, index, **fields):
        await stream_put(ctx, self.dut.command, self.command_codec.pack(
            op=WRITE_ENDPOINT, index=index, endpoint=fields))
        assert await self._result(ctx) == NOTHING

    async def write_context(self, ctx, index, busy=1, evictable=0, thread=0):
        await stream_put(ctx, self.dut.command, self.command_codec.pack(
            op=WRITE_CONTEXT, index=index,
            context={"busy": busy, "evictable": evictable, "thread": thread}))
        assert await self._result(ctx) == NOTHING

    def counters(self, ctx):
        return {name: ctx.get(getattr(self.dut, f"count_{name}")) for name in NOTIFIER_COUNTERS}


# Modes -------------------------------------------------------------------------------------------

def test_mode_none_only_counts():
    dut = small_notifier()
    box = Box(dut)
    results = []

    async def bench(ctx):
        results.append(await box.completion(ctx, 0, entry(1)))       # reset: mode NONE
        await box.write_context(ctx, 0, thread=3)
        await box.write_endpoint(ctx, 1, mode=NONE, asid=2, thread=3, lock=LOCK_VA,
                                 handler_pc=PC, stack=STACK)
        results.append(await box.completion(ctx, 1, entry(2)))
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [NOTHING, NOTHING, counts(none=2)]


def test_mode_lock_signals_the_endpoint_lock():
    dut = small_notifier()
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_endpoint(ctx, 1, mode=LOCK, asid=0xA5, thread=3, lock=LOCK_VA,
                                 handler_pc=PC, stack=STACK)
        await box.write_endpoint(ctx, 0, mode=LOCK, asid=0x01, lock=0xFFFF_FFFF_FFFF)
        results.append(await box.completion(ctx, 1, entry(1)))
        results.append(await box.completion(ctx, 0, entry(2)))
        results.append(await box.completion(ctx, 1, entry(3)))
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [signalled(0xA5, LOCK_VA), signalled(0x01, 0xFFFF_FFFF_FFFF),
                       signalled(0xA5, LOCK_VA), counts(lock=3)]


def test_mode_interrupt_hands_every_arrival_to_the_os_with_the_endpoint_thread():
    dut = small_notifier()
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_context(ctx, 0, thread=3)                     # resident: no matter
        await box.write_endpoint(ctx, 1, mode=NotifyMode.INTERRUPT, asid=2, thread=3,
                                 handler_pc=PC)
        results.append(await box.completion(ctx, 1, entry(1)))
        results.append(await box.completion(ctx, 1, entry(2)))
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [to_os(NotifyOsReason.INTERRUPT, 1, 3, entry(1)),
                       to_os(NotifyOsReason.INTERRUPT, 1, 3, entry(2)), counts(interrupt=2)]


def test_branch_goes_to_the_lowest_busy_context_holding_the_thread():
    dut = small_notifier(contexts=4)
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_context(ctx, 0, thread=7)
        await box.write_context(ctx, 1, busy=0, thread=9)             # not busy: not holding 9
        await box.write_context(ctx, 2, thread=9)
        await box.write_context(ctx, 3, thread=9)
        await box.write_endpoint(ctx, 0, mode=BRANCH, asid=4, thread=9, lock=LOCK_VA,
                                 handler_pc=PC, stack=STACK)
        results.append(await box.completion(ctx, 0, entry(1)))
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [branched(2, 9, 0, entry(1)), counts(branch=1)]


def test_arrivals_in_the_handler_wait_and_go_one_per_return_in_order():
    dut = small_notifier()                                            # queue_depth 2
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_context(ctx, 1, thread=9)
        await box.write_endpoint(ctx, 1, mode=BRANCH, thread=9, handler_pc=PC, stack=STACK)
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=9, handler_pc=PC2)
        results.append(await box.completion(ctx, 1, entry(1)))       # the handler starts
        results.append(await box.completion(ctx, 1, entry(2)))       # waits
        results.append(await box.completion(ctx, 0, entry(10)))      # another endpoint: at once
        results.append(await box.completion(ctx, 1, entry(3)))       # waits: queue full
        results.append(await box.completion(ctx, 1, entry(4)))       # overflow
        results.append(box.counters(ctx))
        results.append(await box.handler_return(ctx, RET, 1, 0))     # in the RETURN's context
        results.append(await box.completion(ctx, 1, entry(5)))       # waits
        results.append(await box.handler_return(ctx, RET, 1, 1))
        results.append(await box.handler_return(ctx, RET, 1, 1))
        results.append(await box.handler_return(ctx, RET, 1, 1))     # queue empty: handler ends
        results.append(await box.completion(ctx, 1, entry(6)))       # at once again
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [
        branched(1, 9, 1, entry(1)), NOTHING, branched(1, 9, 0, entry(10), pc=PC2), NOTHING,
        to_os(QUEUE_OVERFLOW, 1, 9, entry(4)), counts(branch=2, queued=2, os=1),
        branched(0, 9, 1, entry(2)), NOTHING, branched(1, 9, 1, entry(3)),
        branched(1, 9, 1, entry(5)), NOTHING, branched(1, 9, 1, entry(6)),
        counts(branch=6, queued=3, os=1)]


def test_branch_to_a_thread_in_no_context_goes_to_the_os():
    dut = small_notifier()
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=4, handler_pc=PC)
        results.append(await box.completion(ctx, 0, entry(1)))
        await box.write_context(ctx, 0, busy=0, thread=4)
        results.append(await box.completion(ctx, 0, entry(2)))       # not busy: still not there
        await box.write_context(ctx, 1, thread=4)
        results.append(await box.completion(ctx, 0, entry(3)))       # no handler was running
        results.append(await box.handler_return(ctx, EXIT, context=1))
        # Residency comes first: in the handler, an arrival for a thread gone goes to the OS.
        results.append(await box.completion(ctx, 0, entry(4)))
        results.append(await box.handler_return(ctx, RET, 0, 1))     # nothing was queued
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [to_os(NOT_RESIDENT, 0, 4, entry(1)), to_os(NOT_RESIDENT, 0, 4, entry(2)),
                       branched(1, 4, 0, entry(3)), NOTHING, to_os(NOT_RESIDENT, 0, 4, entry(4)),
                       NOTHING, counts(branch=1, os=3)]


def test_spawn_takes_the_lowest_free_context_then_the_lowest_evictable():
    dut = small_notifier(contexts=3)
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_context(ctx, 0, thread=33)
        await box.write_endpoint(ctx, 1, mode=SPAWN, asid=3, thread=50, lock=LOCK_VA,
                                 handler_pc=PC, stack=STACK)
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=50, handler_pc=PC2)
        results.append(await box.completion(ctx, 1, entry(1)))       # context 1
        results.append(await box.completion(ctx, 0, entry(2)))       # 50 is in context 1 now
        results.append(await box.completion(ctx, 1, entry(3)))       # context 2
        results.append(await box.completion(ctx, 1, entry(4)))       # none free, none evictable
        await box.write_context(ctx, 2, evictable=1, thread=44)
        await box.write_context(ctx, 0, evictable=1, thread=33)
        results.append(await box.completion(ctx, 1, entry(5)))       # evicts 33 from context 0
        results.append(await box.completion(ctx, 1, entry(6)))       # then 44 from context 2
        results.append(await box.completion(ctx, 1, entry(7)))       # spawned: not evictable
        results.append(await box.handler_return(ctx, EXIT, context=1))
        results.append(await box.completion(ctx, 1, entry(8)))       # context 1 is free again
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [
        spawned(1, 50, 1, entry(1)), branched(1, 50, 0, entry(2), pc=PC2),
        spawned(2, 50, 1, entry(3)), to_os(NO_CONTEXT, 1, 50, entry(4)),
        spawned(0, 50, 1, entry(5), evicted=33), spawned(2, 50, 1, entry(6), evicted=44),
        to_os(NO_CONTEXT, 1, 50, entry(7)), NOTHING, spawned(1, 50, 1, entry(8)),
        counts(spawn=3, evict=2, os=2, branch=1)]


def test_exit_frees_a_context():
    dut = small_notifier()
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_endpoint(ctx, 1, mode=SPAWN, thread=6, handler_pc=PC, stack=STACK)
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=8, handler_pc=PC)
        await box.write_context(ctx, 0, thread=8)
        await box.write_context(ctx, 1, evictable=1, thread=8)
        results.append(await box.handler_return(ctx, EXIT, context=0))
        results.append(await box.completion(ctx, 0, entry(1)))       # 8 still in context 1
        results.append(await box.handler_return(ctx, EXIT, endpoint=0, context=1))
        results.append(await box.completion(ctx, 0, entry(2)))       # 8 in no context
        results.append(await box.completion(ctx, 1, entry(3)))       # free: no eviction
        results.append(await box.completion(ctx, 1, entry(4)))
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [NOTHING, branched(1, 8, 0, entry(1)), NOTHING,
                       to_os(NOT_RESIDENT, 0, 8, entry(2)), spawned(0, 6, 1, entry(3)),
                       spawned(1, 6, 1, entry(4)), counts(branch=1, os=1, spawn=2)]


# Errors ------------------------------------------------------------------------------------------

def test_bad_returns_are_counted_and_change_nothing():
    dut = small_notifier()
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=5, handler_pc=PC)
        await box.write_endpoint(ctx, 1, mode=BRANCH, thread=5, handler_pc=PC)
        await box.write_context(ctx, 0, thread=5)
        await box.write_context(ctx, 1, thread=6)
        results.append(await box.handler_return(ctx, RET, 0, 0))     # no handler yet
        results.append(await box.completion(ctx, 1, entry(1)))
        results.append(await box.handler_return(ctx, RET, 0, 0))     # endpoint 1's runs, not 0's
        results.append(await box.handler_return(ctx, RET, 2, 0))     # no endpoint 2
        results.append(await box.handler_return(ctx, RET, 15, 0))
        results.append(await box.handler_return(ctx, EXIT, context=2))   # no context 2
        results.append(await box.handler_return(ctx, EXIT, context=7))
        results.append(box.counters(ctx))
        results.append(await box.completion(ctx, 1, entry(2)))       # still in its handler
        results.append(await box.handler_return(ctx, RET, 1, 0))
        results.append(await box.handler_return(ctx, RET, 1, 0))     # ends the handler
        results.append(await box.handler_return(ctx, RET, 1, 0))     # bad now
        results.append(await box.completion(ctx, 0, entry(3)))       # contexts as they were
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [NOTHING, branched(0, 5, 1, entry(1))] + [NOTHING] * 5 \
        + [counts(branch=1, bad_returns=6), NOTHING, branched(0, 5, 1, entry(2)), NOTHING,
           NOTHING, branched(0, 5, 0, entry(3)), counts(branch=3, queued=1, bad_returns=7)]


def test_unknown_endpoint_goes_to_the_os():
    dut = small_notifier()
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_endpoint(ctx, 1, mode=SPAWN, thread=3, handler_pc=PC, stack=STACK)
        results.append(await box.completion(ctx, 2, entry(1)))
        results.append(await box.completion(ctx, 15, entry(2)))
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [to_os(BAD_ENDPOINT, 2, 0, entry(1)), to_os(BAD_ENDPOINT, 15, 0, entry(2)),
                       counts(os=2)]


# Commands ----------------------------------------------------------------------------------------

def test_write_endpoint_leaves_the_handler_and_its_queue():
    dut = small_notifier()
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_context(ctx, 0, thread=9)
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=9, handler_pc=PC)
        results.append(await box.completion(ctx, 0, entry(1)))
        results.append(await box.completion(ctx, 0, entry(2)))       # waits
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=9, handler_pc=PC2)
        results.append(await box.handler_return(ctx, RET, 0, 0))     # the new handler PC
        await box.write_endpoint(ctx, 0, mode=NONE)
        results.append(await box.completion(ctx, 0, entry(3)))       # mode NONE now
        results.append(await box.handler_return(ctx, RET, 0, 0))     # still in the handler
        results.append(await box.handler_return(ctx, RET, 0, 0))     # not any more
        results.append(box.counters(ctx))

    box.run(bench)
    assert results == [branched(0, 9, 0, entry(1)), NOTHING, branched(0, 9, 0, entry(2), pc=PC2),
                       NOTHING, NOTHING, NOTHING,
                       counts(branch=2, queued=1, none=1, bad_returns=1)]


@pytest.mark.parametrize("endpoints, contexts", [(2, 4), (4, 2)])
def test_commands_out_of_range_change_nothing(endpoints, contexts):
    """Command indexes reach the larger table's size: a write beyond the smaller table changes
    nothing (no entry of it is rewritten)."""
    dut = Notifier(endpoints=endpoints, contexts=contexts, queue_depth=1)
    box = Box(dut)
    results = []

    async def bench(ctx):
        for index in range(endpoints):
            await box.write_endpoint(ctx, index, mode=SPAWN, thread=index + 1, handler_pc=PC,
                                     stack=STACK)
        for index in range(contexts):
            await box.write_context(ctx, index, thread=0x80 + index)
        results.append(await box.handler_return(ctx, EXIT, context=0))
        for index in range(endpoints, 4):
            await box.write_endpoint(ctx, index, mode=LOCK, asid=1, lock=LOCK_VA)
        for index in range(contexts, 4):
            await box.write_context(ctx, index, busy=1, thread=0x90)
        for endpoint in range(4):
            results.append(await box.completion(ctx, endpoint, entry(endpoint)))

    box.run(bench)
    # Context 0 is the only free one: the first SPAWN takes it, the others find none.
    assert results == [NOTHING, spawned(0, 1, 0, entry(0)), to_os(NO_CONTEXT, 1, 2, entry(1))] + [
        to_os(BAD_ENDPOINT, endpoint, 0, entry(endpoint)) if endpoint >= endpoints
        else to_os(NO_CONTEXT, endpoint, endpoint + 1, entry(endpoint)) for endpoint in (2, 3)]


# Timing ------------------------------------------------------------------------------------------

def test_output_is_taken_at_the_edge_after_its_input():
    """An input taken at edge t has its event, signal or OS hand-off valid from t: with the
    output ready it is taken at t + 1, for every kind of output and every input port."""
    dut = small_notifier()
    box = Box(dut)
    log = []

    async def bench(ctx):
        await box.write_context(ctx, 0, thread=9)
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=9, handler_pc=PC)
        await box.write_endpoint(ctx, 1, mode=LOCK, asid=1, lock=LOCK_VA)
        for endpoint, number in ((0, 1), (0, 2), (1, 3), (2, 4)):
            await box.completion(ctx, endpoint, entry(number))
        await box.handler_return(ctx, RET, 0, 0)

    box.run(tracer(log, completion=transfer(dut.completion), ret=transfer(dut.handler_return),
                   event=transfer(dut.event), signal=transfer(dut.signal), os=transfer(dut.os),
                   valid=dut.event.valid | dut.signal.valid | dut.os.valid), bench)
    arrivals, returns = edges(log, "completion"), edges(log, "ret")
    assert edges(log, "event") == [arrivals[0] + 1, returns[0] + 1]
    assert edges(log, "signal") == [arrivals[2] + 1]
    assert edges(log, "os") == [arrivals[3] + 1]
    assert not any(log[edge]["valid"] for edge in arrivals + returns)


def test_one_input_per_cycle_return_then_command_then_completion():
    """A RETURN, a command and a completion offered together are taken at three consecutive
    edges in that order, each seeing the effect of the one before: the RETURN ends the handler,
    the command moves its PC, and the completion branches at once to the new PC."""
    dut = small_notifier()
    box = Box(dut)
    log, results = [], []

    async def bench(ctx):
        await box.write_context(ctx, 0, thread=9)
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=9, handler_pc=PC)
        await box.completion(ctx, 0, entry(1))
        results.append(await stream_put_together(
            ctx, (dut.completion, codec(Completion).pack(endpoint=0, entry=entry(2))),
            (dut.command, box.command_codec.pack(op=WRITE_ENDPOINT, index=0, endpoint={
                "mode": BRANCH, "thread": 9, "handler_pc": PC2})),
            (dut.handler_return, codec(HandlerReturn).pack(op=RET, endpoint=0, context=0))))
        await ctx.tick().repeat(2)
        results.append(box.counters(ctx))

    box.run(tracer(log, event=transfer(dut.event), payload=Value.cast(dut.event.payload)), bench,
            check=False)
    assert results == [[3, 2, 1], counts(branch=2)]
    assert [codec(NotifyEvent).unpack(log[edge]["payload"]) for edge in edges(log, "event")] == [
        branched(0, 9, 0, entry(1)).event, branched(0, 9, 0, entry(2), pc=PC2).event]


def test_backpressure_holds_every_output_without_loss():
    """With the outputs ready only now and then, every output comes out once, in order; an output
    waiting stays valid and unchanged, and no input is taken while one waits."""
    dut = small_notifier()
    command = codec(dut.command.payload.shape())
    log = []
    pattern = {"event": (3, 0), "signal": (4, 1), "os": (5, 2)}      # ready when edge % n == k

    async def bench(ctx):
        inputs = [
            (dut.command, command.pack(op=WRITE_CONTEXT, index=0, context={"busy": 1,
                                                                           "thread": 9})),
            (dut.command, command.pack(op=WRITE_ENDPOINT, index=0, endpoint={
                "mode": BRANCH, "thread": 9, "handler_pc": PC})),
            (dut.command, command.pack(op=WRITE_ENDPOINT, index=1, endpoint={
                "mode": LOCK, "asid": 7, "lock": LOCK_VA})),
            *((dut.completion, codec(Completion).pack(endpoint=endpoint, entry=entry(number)))
              for endpoint, number in ((0, 1), (0, 2), (1, 3), (0, 4), (0, 5), (1, 6), (3, 7))),
            (dut.handler_return, codec(HandlerReturn).pack(op=RET, endpoint=0, context=1)),
            (dut.completion, codec(Completion).pack(endpoint=1, entry=entry(8))),
            (dut.handler_return, codec(HandlerReturn).pack(op=RET, endpoint=0, context=0)),
        ]
        for port, payload in inputs:
            await stream_put(ctx, port, payload)

    @background
    async def consumer(ctx):
        edge = 0
        while True:
            for name, (period, phase) in pattern.items():
                ctx.set(getattr(dut, name).ready, edge % period == phase)
            await ctx.tick()
            edge += 1

    outputs = {}
    for name in OUTPUTS:
        port = getattr(dut, name)
        outputs.update({f"{name}_valid": port.valid, f"{name}_ready": port.ready,
                        f"{name}_payload": Value.cast(port.payload)})
    run(dut, bench, consumer, tracer(log, **outputs, taken=transfer(dut.completion)
                                     | transfer(dut.command) | transfer(dut.handler_return)),
        deadline_cycles=150)

    for edge, row in enumerate(log[:-1]):
        waiting = [name for name in OUTPUTS if row[f"{name}_valid"] and not row[f"{name}_ready"]]
        assert not (waiting and row["taken"]), f"edge {edge}: taken while {waiting} waits"
        for name in waiting:
            assert log[edge + 1][f"{name}_valid"], f"edge {edge}: {name} dropped"
            assert log[edge + 1][f"{name}_payload"] == row[f"{name}_payload"]
    got = {name: [codec(layout).unpack(row[f"{name}_payload"]) for row in log
                  if row[f"{name}_valid"] and row[f"{name}_ready"]]
           for name, layout in zip(OUTPUTS, (NotifyEvent, LockSignal, NotifyOsEvent))}
    assert len(edges(log, "taken")) == 13
    assert got == {
        "event": [branched(0, 9, 0, entry(1)).event, branched(1, 9, 0, entry(2)).event,
                  branched(0, 9, 0, entry(4)).event],
        "signal": [signalled(7, LOCK_VA).signal] * 3,
        "os": [to_os(QUEUE_OVERFLOW, 0, 9, entry(5)).os_event,
               to_os(BAD_ENDPOINT, 3, 0, entry(7)).os_event]}


# The RETURN's context ----------------------------------------------------------------------------

@pytest.mark.parametrize("contexts, context", [(2, 3), (4, 6)])
def test_queued_branch_goes_to_the_context_the_return_names(contexts, context):
    """The specification: a RETURN that pops the queue makes an event in "context (the
    RETURN's)", unchecked (the reference model keeps it as given too), and the port carries
    contexts up to 7 whatever ``contexts`` is."""
    dut = small_notifier(contexts=contexts)
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_context(ctx, 0, thread=9)
        await box.write_endpoint(ctx, 0, mode=BRANCH, thread=9, handler_pc=PC)
        await box.completion(ctx, 0, entry(1))
        await box.completion(ctx, 0, entry(2))
        results.append(await box.handler_return(ctx, RET, 0, context))

    box.run(bench)
    assert results == [branched(context, 9, 0, entry(2))]


# Against the reference model, and the counters' invariant ----------------------------------------

def random_input(rng, endpoints, contexts, command):
    """Return (port name, payload) of a random input, mostly completions and mostly BRANCH and
    SPAWN endpoints. Now and then an endpoint, or the context of an EXIT, is one beyond its
    table; a RETURN names a context in the table (one beyond it is
    :func:`test_queued_branch_goes_to_the_context_the_return_names`'s)."""
    kind = rng.choices(["completion", "return", "exit", "endpoint", "context"],
                       weights=[10, 4, 1, 2, 2])[0]
    endpoint = rng.randrange(endpoints) if rng.random() < 0.9 else endpoints
    if kind == "completion":
        return "completion", codec(Completion).pack(endpoint=endpoint,
                                                    entry=entry(rng.randrange(64)))
    if kind == "return":
        return "handler_return", codec(HandlerReturn).pack(op=RET, endpoint=endpoint,
                                                           context=rng.randrange(contexts))
    if kind == "exit":
        context = rng.randrange(contexts) if rng.random() < 0.9 else contexts
        return "handler_return", codec(HandlerReturn).pack(op=EXIT, context=context)
    if kind == "endpoint":
        fields = {"mode": rng.choices(list(NotifyMode), weights=[1, 1, 3, 2, 1])[0],
                  "asid": rng.randrange(4), "thread": rng.randrange(1, 4),
                  "lock": LOCK_VA + rng.randrange(4), "handler_pc": rng.choice([PC, PC2]),
                  "stack": STACK}
        return "command", command.pack(op=WRITE_ENDPOINT, index=rng.randrange(endpoints),
                                       endpoint=fields)
    fields = {"busy": rng.random() < 0.7, "evictable": rng.randrange(2),
              "thread": rng.randrange(1, 4)}
    return "command", command.pack(op=WRITE_CONTEXT, index=rng.randrange(contexts),
                                   context=fields)


def apply(model, command, port, payload):
    """Apply an input to the reference model; return its NotifierResult."""
    if port == "completion":
        return model.completion(**codec(Completion).unpack(payload))
    if port == "handler_return":
        return model.handler_return(**codec(HandlerReturn).unpack(payload))
    fields = command.unpack(payload)
    model.command(fields["op"], fields["index"], fields["endpoint"], fields["context"])
    return NOTHING


def test_random_inputs_one_at_a_time_keep_the_counters_invariant(seed):
    """After every input: the result and the counters are the reference model's, and
    completions = none + lock + branch + spawn + evict + os + interrupt + arrivals now
    queued, where the
    arrivals now queued are those counted ``queued`` less the RETURNs that delivered one."""
    rng = random.Random(seed)
    params = dict(endpoints=2, contexts=2, queue_depth=2)
    dut, model = Notifier(**params), NotifierModel(**params)
    box = Box(dut)
    problems = []

    async def bench(ctx):
        completions = delivered = 0
        for step in range(150):
            port, payload = random_input(rng, 2, 2, box.command_codec)
            await stream_put(ctx, getattr(dut, port), payload)
            got = await box._result(ctx)
            want = apply(model, box.command_codec, port, payload)
            completions += port == "completion"
            delivered += port == "handler_return" and got.event is not None
            counters = box.counters(ctx)
            paths = sum(counters[name] for name in ("none", "lock", "branch", "spawn", "evict",
                                                    "os", "interrupt"))
            if got != want or counters != model.counters:
                problems.append((step, port, got, want, counters, model.counters))
            if completions != paths + counters["queued"] - delivered:
                problems.append((step, "invariant", completions, counters, delivered))

    box.run(bench, deadline_cycles=800)
    assert not problems, f"seed {seed}: {problems[:2]}"


def test_random_traffic_against_model(seed):
    """Inputs offered at random on all three ports at once, outputs ready at random; the inputs,
    in the order the notifier took them, replayed in the reference model give the same
    outputs, every one of them, once."""
    rng = random.Random(seed)
    params = dict(endpoints=2, contexts=2, queue_depth=2)
    dut, model = Notifier(**params), NotifierModel(**params)
    command = codec(dut.command.payload.shape())
    log = []
    inputs = {"completion": [], "handler_return": [], "command": []}
    while sum(map(len, inputs.values())) < 200:
        port, payload = random_input(rng, 2, 2, command)
        inputs[port].append(payload)
    offered = []        # the input ports whose inputs have all been taken

    def driver(port):
        # Gaps spread each port's inputs over about 300 cycles, so that they mix to the end.
        spread = max(2, 600 // len(inputs[port]))

        async def testbench(ctx):
            for payload in inputs[port]:
                gap = rng.randrange(spread)
                if gap:
                    await ctx.tick().repeat(gap)
                await stream_put(ctx, getattr(dut, port), payload)
            offered.append(port)
        return testbench

    @background
    async def consumer(ctx):
        while True:
            for name in OUTPUTS:
                ctx.set(getattr(dut, name).ready, rng.random() < 0.7)
            await ctx.tick()

    async def drain(ctx):
        # The log then holds every output: none may be missing.
        with waiting(ctx, "every input to be taken and every output to come out"):
            while (len(offered) < len(inputs)
                   or any(ctx.get(getattr(dut, name).valid) for name in OUTPUTS)):
                await ctx.tick()

    exprs = {}
    for name in OUTPUTS + tuple(inputs):
        port = getattr(dut, name)
        exprs.update({f"{name}_taken": transfer(port),
                      f"{name}_payload": Value.cast(port.payload)})
    run(dut, *map(driver, inputs), consumer, drain, tracer(log, **exprs), deadline_cycles=700)

    want = {name: [] for name in OUTPUTS}
    taken = Counter()
    for row in log:
        ports = [port for port in inputs if row[f"{port}_taken"]]
        assert len(ports) <= 1, f"seed {seed}: two inputs at one edge"
        for port in ports:
            taken[port] += 1
            result = apply(model, command, port, row[f"{port}_payload"])
            for name, value, layout in zip(OUTPUTS, (result.event, result.signal, result.os_event),
                                           (NotifyEvent, LockSignal, NotifyOsEvent)):
                if value is not None:
                    want[name].append(codec(layout).pack(**value))
    got = {name: [row[f"{name}_payload"] for row in log if row[f"{name}_taken"]]
           for name in OUTPUTS}
    assert taken == {port: len(payloads) for port, payloads in inputs.items()}, \
        f"seed {seed}: the drivers did not finish"
    for name in OUTPUTS:
        assert got[name] == want[name], f"seed {seed}: {name}"


# Parameters --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(endpoints=0), ValueError, "endpoints must be between 1 and 16, not 0"),
    (dict(endpoints=17), ValueError, "endpoints must be between 1 and 16, not 17"),
    (dict(contexts=0), ValueError, "contexts must be between 1 and 8, not 0"),
    (dict(contexts=9), ValueError, "contexts must be between 1 and 8, not 9"),
    (dict(queue_depth=0), ValueError, "queue_depth must be between 1 and 16, not 0"),
    (dict(queue_depth=17), ValueError, "queue_depth must be between 1 and 16, not 17"),
    (dict(endpoints=2.0), TypeError, "endpoints must be an integer, not 2.0"),
    (dict(contexts="4"), TypeError, "contexts must be an integer, not '4'"),
    (dict(queue_depth=False), TypeError, "queue_depth must be an integer, not False"),
])
def test_rejects_bad_parameters(kwargs, error, message):
    with pytest.raises(error) as raised:
        Notifier(**kwargs)
    assert str(raised.value) == message


def test_accepts_the_largest_parameters():
    dut = Notifier(endpoints=16, contexts=8, queue_depth=16)
    silence_unused(dut)                                               # not elaborated here
    assert (dut.endpoints, dut.contexts, dut.queue_depth) == (16, 8, 16)


def test_smallest_and_largest_tables():
    """One endpoint, one context and a queue of one; and 16 endpoints (every endpoint number is
    known) and 8 contexts (every context number is in the table: no EXIT is bad)."""
    small, large = Notifier(endpoints=1, contexts=1, queue_depth=1), \
        Notifier(endpoints=16, contexts=8, queue_depth=1)
    assert (small.endpoints, small.contexts, small.queue_depth) == (1, 1, 1)
    results = []

    async def small_bench(ctx):
        await small_box.write_context(ctx, 0, thread=2)
        await small_box.write_endpoint(ctx, 0, mode=BRANCH, thread=2, handler_pc=PC)
        for number in range(3):
            results.append(await small_box.completion(ctx, 0, entry(number)))
        results.append(await small_box.completion(ctx, 1, entry(3)))
        results.append(await small_box.handler_return(ctx, EXIT, context=1))
        results.append(small_box.counters(ctx))

    async def large_bench(ctx):
        await large_box.write_endpoint(ctx, 15, mode=SPAWN, thread=4, handler_pc=PC, stack=STACK)
        await large_box.write_context(ctx, 6, thread=5)
        for number in range(8):
            results.append(await large_box.completion(ctx, 15, entry(number)))
        results.append(await large_box.handler_return(ctx, EXIT, context=7))
        results.append(large_box.counters(ctx))

    small_box, large_box = Box(small), Box(large)
    small_box.run(small_bench, deadline_cycles=60)
    large_box.run(large_bench, deadline_cycles=60)
    assert results == [
        branched(0, 2, 0, entry(0)), NOTHING, to_os(QUEUE_OVERFLOW, 0, 2, entry(2)),
        to_os(BAD_ENDPOINT, 1, 0, entry(3)), NOTHING, counts(branch=1, queued=1, os=2,
                                                             bad_returns=1),
        *(spawned(context, 4, 15, entry(number))
          for number, context in enumerate((0, 1, 2, 3, 4, 5, 7))),
        to_os(NO_CONTEXT, 15, 4, entry(7)), NOTHING, counts(spawn=7, os=1)]


from amaranth.hdl import Shape


def test_default_parameters_and_counter_width():
    dut = Notifier()
    assert (dut.endpoints, dut.contexts, dut.queue_depth) == (8, 4, 4)
    assert Shape.cast(dut.signature.members["count_branch"].shape) == Shape(32)
    silence_unused(dut)


def test_queue_of_three_wraps_around_in_order():
    dut = small_notifier(queue_depth=3)
    box = Box(dut)
    results = []

    async def bench(ctx):
        await box.write_context(ctx, 1, thread=9)
        await box.write_endpoint(ctx, 1, mode=BRANCH, thread=9, handler_pc=PC)
        for number in range(1, 5):       # the handler starts; three wait in queue slots 0 to 2
            results.append(await box.completion(ctx, 1, entry(number)))
        results.append(await box.handler_return(ctx, RET, 1, 1))
        results.append(await box.completion(ctx, 1, entry(5)))      # waits in slot 0 again
        for _ in range(4):
            results.append(await box.handler_return(ctx, RET, 1, 1))

    box.run(bench)
    assert results == [branched(1, 9, 1, entry(1)), NOTHING, NOTHING, NOTHING,
                       branched(1, 9, 1, entry(2)), NOTHING,
                       *(branched(1, 9, 1, entry(number)) for number in (3, 4, 5)), NOTHING]


def test_an_input_with_no_output_is_taken_while_the_outputs_are_not_ready():
    dut = small_notifier()
    taken = []

    async def bench(ctx):
        for name in OUTPUTS:
            ctx.set(getattr(dut, name).ready, 0)
        await stream_put(ctx, dut.completion, codec(Completion).pack(endpoint=0, entry=entry(1)))
        taken.append(True)                                            # mode NONE: no output

    run(dut, bench, deadline_cycles=50)
    assert taken == [True]


def test_inputs_are_taken_one_per_cycle_while_their_outputs_are_taken():
    dut = small_notifier()
    command = codec(dut.command.payload.shape())
    log = []

    async def bench(ctx):
        for name in OUTPUTS:
            ctx.set(getattr(dut, name).ready, 1)
        await stream_put(ctx, dut.command, command.pack(op=WRITE_ENDPOINT, index=0, endpoint={
            "mode": LOCK, "asid": 7, "lock": LOCK_VA}))
        for number in range(3):
            await stream_put(ctx, dut.completion,
                             codec(Completion).pack(endpoint=0, entry=entry(number)))

    run(dut, bench, tracer(log, completion=transfer(dut.completion), signal=transfer(dut.signal)),
        deadline_cycles=50)
    arrivals = edges(log, "completion")
    assert arrivals == [arrivals[0], arrivals[0] + 1, arrivals[0] + 2]
    assert edges(log, "signal") == [edge + 1 for edge in arrivals]
