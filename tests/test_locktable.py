"""Unit tests of the lock table (rtl/locktable.py) in the Amaranth simulator, against the
transaction semantics of its specification (/tmp/notes/spec5.md, "LockTable" and its amendment:
core-side operations that need a new entry leave the last LOCK_SIGNAL_RESERVE free entries to
SIGNAL). Table sizes below count on LOCK_SIGNAL_RESERVE = 1."""

import random

import pytest
from amaranth.hdl import Shape, Value

from behavioral.locktable import LockResult, LockTableModel
from rtl.layouts import (LOCK_SIGNAL_RESERVE, LockOp, LockOsEvent, LockOsReason, LockReleased,
                         LockRequest, LockResponse, LockSignal, LockStatus, Residency, codec)
from rtl.locktable import LockTable
from rtl.params import silence_unused
from tests.sim import (OneAtATime, background, edges, run, stream_put, stream_put_together, tracer,
                       transfer, waiting)

ACQUIRE, RELEASE, WAIT = LockOp.ACQUIRE, LockOp.RELEASE, LockOp.WAIT
GRANTED, BLOCKED, FULL = LockStatus.GRANTED, LockStatus.BLOCKED, LockStatus.FULL
NOT_OWNER, WRONG_KIND = LockStatus.NOT_OWNER, LockStatus.WRONG_KIND
NOT_RESIDENT, BAD_SIGNAL = LockOsReason.NOT_RESIDENT, LockOsReason.BAD_SIGNAL
ASID, A, B, C, D = 5, 0x7F00_1000, 0x7F00_2000, 0x0000_3008, 0xFFFF_FFFF_FFF8
OUTPUTS = ("response", "released", "os")
# Every directed test is done well before this many cycles.
DEADLINE = 400


assert LOCK_SIGNAL_RESERVE == 1, "the table sizes of these tests assume a reserve of one entry"


def small_table(**kwargs):
    """A table small enough that every limit is a few operations away."""
    return LockTable(**{"entries": 2, "waiters": 2, "contexts": 2, "count_bits": 2, **kwargs})


def released(context, thread, addr=A, asid=ASID):
    bits = codec(LockReleased).pack(context=context, thread=thread, asid=asid, addr=addr)
    return LockResult(released=codec(LockReleased).unpack(bits))


def to_os(reason, thread, addr, asid=ASID):
    bits = codec(LockOsEvent).pack(reason=reason, thread=thread, asid=asid, addr=addr)
    return LockResult(os_event=codec(LockOsEvent).unpack(bits))


def answered(status, event=LockResult()):
    """The result of a request answered ``status`` that also made ``event``."""
    return LockResult(status, event.released, event.os_event)


class Table(OneAtATime):
    """A LockTable driven one operation at a time, its outputs always ready; each operation
    returns, as a :class:`behavioral.locktable.LockResult`, what the table put out at the edge
    after the one that took it (the outputs are registered)."""

    def __init__(self, dut):
        super().__init__(dut, OUTPUTS, deadline_cycles=DEADLINE)

    async def _result(self, ctx, thread=None):
        out = await self.outputs(ctx)
        status = None
        if out["response"] is not None:
            response = codec(LockResponse).unpack(out["response"])
            assert response["thread"] == thread, "the response does not echo the thread"
            status = response["status"]
        return LockResult(status,
                          codec(LockReleased).unpack(out["released"]) if out["released"] is not None
                          else None,
                          codec(LockOsEvent).unpack(out["os"]) if out["os"] is not None else None)

    async def request(self, ctx, op, addr, thread, asid=ASID):
        await stream_put(ctx, self.dut.request, codec(LockRequest).pack(op=op, asid=asid, addr=addr,
                                                                        thread=thread))
        return await self._result(ctx, thread)

    async def signal(self, ctx, addr, asid=ASID):
        await stream_put(ctx, self.dut.signal, codec(LockSignal).pack(asid=asid, addr=addr))
        return await self._result(ctx)

    async def residency(self, ctx, context, thread, resident=1):
        await stream_put(ctx, self.dut.residency,
                         codec(Residency).pack(context=context, resident=resident, thread=thread))
        assert await self._result(ctx) == LockResult()

    def used(self, ctx):
        return ctx.get(self.dut.entries_used), ctx.get(self.dut.waiters_used)


# Mutexes -----------------------------------------------------------------------------------------

def test_mutex_hand_over_in_arrival_order():
    """Four contenders park behind the owner; each RELEASE hands the mutex to the oldest, to its
    context if one holds it, else to the OS; a slot freed mid-queue is reused at the tail."""
    dut = small_table(waiters=3, contexts=4)
    table = Table(dut)
    results = []

    async def bench(ctx):
        for context, thread in enumerate((9, 3, 2, 4)):
            await table.residency(ctx, context, thread)
        results.append(await table.request(ctx, ACQUIRE, A, 1))
        for thread in (2, 3, 5):
            results.append(await table.request(ctx, ACQUIRE, A, thread))
        results.append(await table.request(ctx, RELEASE, A, 1))    # -> 2, slot 0 freed
        results.append(await table.request(ctx, ACQUIRE, A, 4))    # slot 0 again, behind 5
        for thread in (2, 3, 5, 4):
            results.append(await table.request(ctx, RELEASE, A, thread))
        results.append(table.used(ctx))

    table.run(bench)
    assert results == [
        answered(GRANTED), answered(BLOCKED), answered(BLOCKED), answered(BLOCKED),
        answered(GRANTED, released(2, 2)), answered(BLOCKED),
        answered(GRANTED, released(1, 3)), answered(GRANTED, to_os(NOT_RESIDENT, 5, A)),
        answered(GRANTED, released(3, 4)), answered(GRANTED), (0, 0)]


def test_queues_of_several_locks_share_the_waiter_slots():
    """Threads parked on different locks take whichever slots are free; each lock's queue still
    goes in arrival order, also when its first parked thread takes a slot other than the one
    that was lowest when the lock was allocated."""
    dut = small_table(entries=3, waiters=3)
    table = Table(dut)
    results = []

    async def bench(ctx):
        await table.residency(ctx, 0, 4)
        await table.residency(ctx, 1, 5)
        results.append(await table.request(ctx, WAIT, B, 3))          # slot 0
        results.append(await table.request(ctx, ACQUIRE, A, 1))      # slot 1 was the lowest
        results.append(await table.signal(ctx, B))                    # slot 0 free again
        results.append(await table.request(ctx, ACQUIRE, A, 2))      # slot 0
        results.append(await table.request(ctx, WAIT, C, 5))          # slot 1
        results.append(await table.request(ctx, ACQUIRE, A, 4))      # slot 2
        results.append(await table.request(ctx, RELEASE, A, 1))
        results.append(await table.signal(ctx, C))
        results.append(await table.request(ctx, RELEASE, A, 2))
        results.append(await table.request(ctx, RELEASE, A, 4))
        results.append(table.used(ctx))

    table.run(bench)
    assert results == [
        answered(BLOCKED), answered(GRANTED), to_os(NOT_RESIDENT, 3, B), answered(BLOCKED),
        answered(BLOCKED), answered(BLOCKED), answered(GRANTED, to_os(NOT_RESIDENT, 2, A)),
        released(1, 5, C), answered(GRANTED, released(0, 4)), answered(GRANTED), (0, 0)]


def test_acquire_by_the_owner_parks_it():
    dut = small_table()
    table = Table(dut)
    results = []

    async def bench(ctx):
        await table.residency(ctx, 1, 7)
        results.append(await table.request(ctx, ACQUIRE, A, 7))
        results.append(await table.request(ctx, ACQUIRE, A, 7))
        results.append(await table.request(ctx, RELEASE, A, 7))    # handed to itself
        results.append(await table.request(ctx, RELEASE, A, 7))    # still the owner
        results.append(await table.request(ctx, RELEASE, A, 7))    # no entry any more

    table.run(bench)
    assert results == [answered(GRANTED), answered(BLOCKED), answered(GRANTED, released(1, 7)),
                       answered(GRANTED), answered(NOT_OWNER)]


def test_release_by_anyone_but_the_owner_is_not_owner():
    dut = small_table()
    table = Table(dut)
    results = []

    async def bench(ctx):
        await table.residency(ctx, 0, 2)
        results.append(await table.request(ctx, RELEASE, A, 1))    # no entry
        results.append(await table.request(ctx, ACQUIRE, A, 1))
        results.append(await table.request(ctx, ACQUIRE, A, 2))
        results.append(await table.request(ctx, RELEASE, A, 3))    # a stranger
        results.append(await table.request(ctx, RELEASE, A, 2))    # a parked thread
        results.append(await table.request(ctx, RELEASE, A, 1, asid=ASID + 1))  # other ASID
        results.append(table.used(ctx))
        # Nothing changed: 1 still owns the mutex, 2 is still parked.
        results.append(await table.request(ctx, RELEASE, A, 1))
        results.append(await table.request(ctx, RELEASE, A, 2))

    table.run(bench)
    assert results == [answered(NOT_OWNER), answered(GRANTED), answered(BLOCKED),
                       answered(NOT_OWNER), answered(NOT_OWNER), answered(NOT_OWNER), (1, 1),
                       answered(GRANTED, released(0, 2)), answered(GRANTED)]


def test_wrong_kind_both_ways_changes_nothing():
    dut = small_table(entries=4)
    table = Table(dut)
    results = []

    async def bench(ctx):
        await table.residency(ctx, 0, 4)
        results.append(await table.request(ctx, ACQUIRE, A, 1))       # mutex A
        results.append(await table.signal(ctx, B))                    # event B, count 1
        results.append(await table.request(ctx, WAIT, C, 4))          # event C, 4 parked
        results.append(await table.request(ctx, WAIT, A, 2))
        results.append(await table.request(ctx, ACQUIRE, B, 2))
        results.append(await table.request(ctx, RELEASE, B, 2))
        results.append(await table.request(ctx, ACQUIRE, C, 2))
        results.append(await table.request(ctx, RELEASE, C, 4))
        results.append(table.used(ctx))
        # Nothing changed: A is 1's, B counts one signal, 4 waits on C.
        results.append(await table.request(ctx, RELEASE, A, 1))
        results.append(await table.request(ctx, WAIT, B, 2))
        results.append(await table.signal(ctx, C))
        results.append(table.used(ctx))

    table.run(bench)
    assert results == [answered(GRANTED), LockResult(), answered(BLOCKED)] \
        + [answered(WRONG_KIND)] * 5 + [(3, 1)] \
        + [answered(GRANTED), answered(GRANTED), released(0, 4, C), (0, 0)]


# Limits ------------------------------------------------------------------------------------------

def test_full_for_entries_keeps_the_signal_reserve_and_changes_nothing():
    """Core-side operations get FULL once only the reserved entry is free; a SIGNAL takes it."""
    dut = small_table(entries=3)
    table = Table(dut)
    results = []

    async def bench(ctx):
        results.append(await table.request(ctx, ACQUIRE, A, 1))
        results.append(await table.request(ctx, WAIT, B, 2))
        results.append(await table.request(ctx, ACQUIRE, C, 3))      # one entry free: reserved
        results.append(await table.request(ctx, WAIT, C, 3))
        results.append(table.used(ctx))
        results.append(await table.signal(ctx, D))                    # the last entry
        results.append(table.used(ctx))
        # As if the FULL operations never happened: C has no entry, 3 is parked nowhere.
        results.append(await table.request(ctx, RELEASE, C, 3))
        results.append(await table.request(ctx, RELEASE, A, 1))
        results.append(await table.request(ctx, ACQUIRE, C, 3))      # one free: still FULL
        results.append(await table.request(ctx, WAIT, D, 4))          # D freed: two free
        results.append(await table.request(ctx, ACQUIRE, C, 3))      # a mutex: C was no event
        results.append(await table.signal(ctx, B))                    # only 2 waits on B
        results.append(table.used(ctx))

    table.run(bench)
    assert results == [answered(GRANTED), answered(BLOCKED), answered(FULL), answered(FULL),
                       (2, 1), LockResult(), (3, 1), answered(NOT_OWNER), answered(GRANTED),
                       answered(FULL), answered(GRANTED), answered(GRANTED),
                       to_os(NOT_RESIDENT, 2, B), (1, 0)]


def test_full_for_waiter_slots_changes_nothing():
    dut = small_table(entries=4)
    table = Table(dut)
    results = []

    async def bench(ctx):
        results.append(await table.request(ctx, ACQUIRE, A, 1))
        results.append(await table.request(ctx, ACQUIRE, A, 2))
        results.append(await table.request(ctx, WAIT, B, 3))          # both slots taken
        results.append(await table.request(ctx, ACQUIRE, A, 4))      # mutex, no slot
        results.append(await table.request(ctx, WAIT, B, 5))          # event, no slot
        results.append(await table.request(ctx, WAIT, C, 6))          # free entries, no slot
        results.append(table.used(ctx))
        # As if the FULL operations never happened.
        results.append(await table.request(ctx, RELEASE, A, 1))      # to 2, not 4
        results.append(await table.request(ctx, RELEASE, A, 2))      # nobody left: freed
        results.append(await table.signal(ctx, B))                    # wakes 3
        results.append(await table.signal(ctx, B))                    # 5 is not parked: counted
        results.append(await table.request(ctx, ACQUIRE, C, 6))      # no event C was made
        results.append(table.used(ctx))

    table.run(bench)
    assert results == [
        answered(GRANTED), answered(BLOCKED), answered(BLOCKED), answered(FULL), answered(FULL),
        answered(FULL), (2, 2), answered(GRANTED, to_os(NOT_RESIDENT, 2, A)), answered(GRANTED),
        to_os(NOT_RESIDENT, 3, B), LockResult(), answered(GRANTED), (2, 0)]


def test_entries_and_waiters_used_follow_every_path():
    dut = small_table(entries=3, waiters=3)
    table = Table(dut)
    used = []

    async def bench(ctx):
        steps = [
            (table.request, ACQUIRE, A, 1),     # allocate mutex
            (table.request, ACQUIRE, A, 2),     # park
            (table.request, WAIT, B, 3),        # allocate event and park
            (table.request, WAIT, B, 4),        # park
            (table.request, RELEASE, A, 1),     # hand over: pop
            (table.request, RELEASE, A, 2),     # free the mutex
            (table.signal, B),                  # pop
            (table.signal, B),                  # pop the last: free
            (table.signal, B),                  # allocate, count 1
            (table.signal, B),                  # count 2
            (table.request, WAIT, B, 5),        # count 1
            (table.request, WAIT, B, 5),        # count 0: free
        ]
        used.append(table.used(ctx))
        for operation, *args in steps:
            await operation(ctx, *args)
            used.append(table.used(ctx))

    table.run(bench)
    assert used == [(0, 0), (1, 0), (1, 1), (2, 2), (2, 3), (2, 2), (1, 2), (1, 1), (0, 0),
                    (1, 0), (1, 0), (1, 0), (0, 0)]


# Notification locks ------------------------------------------------------------------------------

def test_signal_is_remembered_and_wait_returns_at_once():
    dut = small_table()
    table = Table(dut)
    results = []

    async def bench(ctx):
        results.append(await table.signal(ctx, A))
        results.append(table.used(ctx))
        results.append(await table.signal(ctx, A))
        results.append(await table.request(ctx, WAIT, A, 1))
        results.append(await table.request(ctx, WAIT, A, 2))
        results.append(table.used(ctx))                               # count 0: freed
        results.append(await table.request(ctx, WAIT, A, 3))          # nothing left to consume
        results.append(table.used(ctx))

    table.run(bench)
    assert results == [LockResult(), (1, 0), LockResult(), answered(GRANTED), answered(GRANTED),
                       (0, 0), answered(BLOCKED), (1, 1)]


def test_signal_wakes_parked_waits_in_order():
    dut = small_table()
    table = Table(dut)
    results = []

    async def bench(ctx):
        await table.residency(ctx, 1, 7)
        results.append(await table.request(ctx, WAIT, A, 7))
        results.append(await table.request(ctx, WAIT, A, 8))          # 8 is in no context
        results.append(await table.signal(ctx, A))
        results.append(await table.signal(ctx, A))
        results.append(table.used(ctx))                               # FIFO empty, count 0
        results.append(await table.request(ctx, WAIT, A, 7))          # no signal was left

    table.run(bench)
    assert results == [answered(BLOCKED), answered(BLOCKED), released(1, 7),
                       to_os(NOT_RESIDENT, 8, A), (0, 0), answered(BLOCKED)]


def test_release_goes_to_the_lowest_context_holding_the_thread_at_release_time():
    dut = small_table(contexts=4)
    table = Table(dut)
    results = []

    async def bench(ctx):
        await table.residency(ctx, 3, 6)
        await table.residency(ctx, 1, 6)
        await table.residency(ctx, 0, 6, resident=0)                  # not resident: no match
        await table.residency(ctx, 7, 6)                              # no context 7: ignored
        for _ in range(4):
            await table.request(ctx, WAIT, A, 6)
            if len(results) == 1:
                await table.residency(ctx, 1, 2)                      # context 1 moves on
            if len(results) == 2:
                await table.residency(ctx, 3, 6, resident=0)          # context 3 empties
            if len(results) == 3:
                await table.residency(ctx, 0, 6)
            results.append(await table.signal(ctx, A))

    table.run(bench)
    assert results == [released(1, 6), released(3, 6), to_os(NOT_RESIDENT, 6, A),
                       released(0, 6)]


def test_signal_to_a_mutex_is_bad_signal_and_changes_nothing():
    dut = small_table()
    table = Table(dut)
    results = []

    async def bench(ctx):
        await table.residency(ctx, 0, 2)
        results.append(await table.request(ctx, ACQUIRE, A, 1))
        results.append(await table.request(ctx, ACQUIRE, A, 2))
        results.append(await table.signal(ctx, A))
        results.append(table.used(ctx))
        results.append(await table.signal(ctx, A, asid=ASID + 1))     # another lock: an event
        results.append(await table.request(ctx, RELEASE, A, 1))

    table.run(bench)
    assert results == [answered(GRANTED), answered(BLOCKED), to_os(BAD_SIGNAL, 0, A), (1, 1),
                       LockResult(), answered(GRANTED, released(0, 2))]


# Held signals ------------------------------------------------------------------------------------

async def hold(ctx, dut, addr, cycles):
    """Offer SIGNAL ``addr`` and leave it offered; return whether it was refused for ``cycles``
    edges with nothing coming out."""
    ctx.set(Value.cast(dut.signal.payload), codec(LockSignal).pack(asid=ASID, addr=addr))
    ctx.set(dut.signal.valid, 1)
    refused = True
    for _ in range(cycles):
        _, _, ready, response, woken, os_event = await ctx.tick().sample(
            dut.signal.ready, dut.response.valid, dut.released.valid, dut.os.valid)
        refused &= not (ready or response or woken or os_event)
    return refused


def test_signal_held_at_the_count_maximum_until_a_wait_consumes_one():
    dut = small_table()                                               # count maximum: 3
    table = Table(dut)
    log, results = [], []

    async def bench(ctx):
        for _ in range(3):
            results.append(await table.signal(ctx, A))
        results.append(await hold(ctx, dut, A, 6))
        # The WAIT is taken first (the request's turn), the SIGNAL at the next edge.
        results.append(await stream_put_together(
            ctx, (dut.request, codec(LockRequest).pack(op=WAIT, asid=ASID, addr=A, thread=1)),
            (dut.signal, codec(LockSignal).pack(asid=ASID, addr=A))))
        await ctx.tick()
        for thread in (1, 2, 3, 4):                                   # count 3 again
            results.append(await table.request(ctx, WAIT, A, thread))

    table.run(tracer(log, response=transfer(dut.response), status=dut.response.payload.status),
              bench, check=False)
    assert results == [LockResult()] * 3 + [True, [1, 2]] + [answered(GRANTED)] * 3 \
        + [answered(BLOCKED)]
    assert [LockStatus(log[edge]["status"]) for edge in edges(log, "response")] == \
        [GRANTED] * 4 + [BLOCKED]


def test_signal_held_while_no_entry_is_free_until_one_frees():
    dut = small_table()
    table = Table(dut)
    log, results = [], []

    async def bench(ctx):
        results.append(await table.request(ctx, ACQUIRE, A, 1))
        results.append(await table.signal(ctx, B))                    # the last entry
        results.append(await hold(ctx, dut, C, 6))
        results.append(table.used(ctx))
        results.append(await stream_put_together(
            ctx, (dut.request, codec(LockRequest).pack(op=RELEASE, asid=ASID, addr=A, thread=1)),
            (dut.signal, codec(LockSignal).pack(asid=ASID, addr=C))))
        await ctx.tick()
        results.append(table.used(ctx))
        results.append(await table.request(ctx, WAIT, C, 3))          # the SIGNAL was kept
        results.append(table.used(ctx))

    table.run(tracer(log, response=transfer(dut.response), status=dut.response.payload.status),
              bench, check=False)
    assert results == [answered(GRANTED), LockResult(), True, (2, 0), [1, 2], (2, 0),
                       answered(GRANTED), (1, 0)]
    assert [LockStatus(log[edge]["status"]) for edge in edges(log, "response")] == [GRANTED] * 3


# Timing ------------------------------------------------------------------------------------------

def test_one_operation_per_cycle():
    """Operations offered on every port at once are taken one per edge, with no idle edge:
    residency first, then request and signal by turns (request first); each request is answered
    at the next edge, even when it depends on the operation of the edge before."""
    dut = small_table(entries=3)
    log = []
    requests = [
        (ACQUIRE, A, 1, GRANTED), (ACQUIRE, A, 2, BLOCKED), (RELEASE, A, 1, GRANTED),
        (RELEASE, A, 2, GRANTED), (ACQUIRE, A, 3, GRANTED), (WAIT, B, 1, GRANTED),
        (WAIT, B, 1, GRANTED), (WAIT, B, 1, BLOCKED), (RELEASE, A, 3, GRANTED)]

    async def requester(ctx):
        for op, addr, thread, _ in requests:
            await stream_put(ctx, dut.request, codec(LockRequest).pack(op=op, asid=ASID, addr=addr,
                                                                       thread=thread))

    async def ni(ctx):
        for _ in range(2):
            await stream_put(ctx, dut.signal, codec(LockSignal).pack(asid=ASID, addr=B))

    async def os(ctx):
        await stream_put(ctx, dut.residency, codec(Residency).pack(context=1, resident=1, thread=2))

    async def consumer(ctx):
        for name in OUTPUTS:
            ctx.set(getattr(dut, name).ready, 1)

    trace = tracer(log, residency=transfer(dut.residency), request=transfer(dut.request),
                   signal=transfer(dut.signal), response=transfer(dut.response),
                   status=dut.response.payload.status, released=transfer(dut.released),
                   woken=Value.cast(dut.released.payload))
    run(dut, consumer, requester, ni, os, trace, deadline_cycles=40)
    port = {edge: name for name in ("residency", "request", "signal")
            for edge in edges(log, name)}
    assert sorted(port) == list(range(12))
    assert [port[edge] for edge in range(12)] == \
        ["residency", "request", "signal", "request", "signal"] + ["request"] * 7
    taken = edges(log, "request")
    assert edges(log, "response") == [edge + 1 for edge in taken]
    assert [LockStatus(log[edge + 1]["status"]) for edge in taken] == \
        [status for *_, status in requests]
    assert edges(log, "released") == [taken[2] + 1]
    assert codec(LockReleased).unpack(log[taken[2] + 1]["woken"]) == released(1, 2).released


def test_signal_reaches_released_in_two_cycles_behind_a_request():
    """A SIGNAL offered alone is taken at the first edge and its ``released`` event at the next:
    1 cycle. Offered at the same cycle as a request (the request's turn), it is taken one edge
    later: 2 cycles, the most the design allows."""
    dut = small_table(entries=3)
    table = Table(dut)
    log, waited = [], []

    async def bench(ctx):
        await table.residency(ctx, 1, 7)
        for together in (False, True):
            await table.request(ctx, WAIT, A, 7)
            offers = [(dut.signal, codec(LockSignal).pack(asid=ASID, addr=A))]
            if together:
                acquire = codec(LockRequest).pack(op=ACQUIRE, asid=ASID, addr=B, thread=3)
                offers.insert(0, (dut.request, acquire))
            waited.append(await stream_put_together(ctx, *offers))
            await ctx.tick().repeat(2)

    table.run(bench, tracer(log, offered=dut.signal.valid, signal=transfer(dut.signal),
                            released=transfer(dut.released), woken=Value.cast(
                                dut.released.payload)), check=False)
    offered = [edge for edge in edges(log, "offered")
               if edge == 0 or not log[edge - 1]["offered"] or log[edge - 1]["signal"]]
    wakes = edges(log, "released")
    assert waited == [[1], [1, 2]]
    assert [wake - start for wake, start in zip(wakes, offered, strict=True)] == [1, 2]
    assert [codec(LockReleased).unpack(log[wake]["woken"]) for wake in wakes] == \
        [released(1, 7).released] * 2


def test_backpressure_holds_every_result_without_loss():
    """With the outputs ready only now and then, every result comes out once, in order; a result
    waiting stays valid and unchanged, and no operation is taken while one waits."""
    dut = small_table()
    log = []
    pattern = {"response": (3, 0), "released": (4, 1), "os": (5, 2)}   # ready when edge % n == k

    async def bench(ctx):
        operations = [
            (dut.residency, codec(Residency).pack(context=0, resident=1, thread=2)),
            *((dut.request, codec(LockRequest).pack(op=op, asid=ASID, addr=addr, thread=thread))
              for op, addr, thread in ((ACQUIRE, A, 1), (ACQUIRE, A, 2), (ACQUIRE, A, 3),
                                       (RELEASE, A, 1), (RELEASE, A, 2))),
            (dut.signal, codec(LockSignal).pack(asid=ASID, addr=A)),
            (dut.request, codec(LockRequest).pack(op=RELEASE, asid=ASID, addr=A, thread=3)),
            (dut.request, codec(LockRequest).pack(op=WAIT, asid=ASID, addr=B, thread=4)),
            (dut.signal, codec(LockSignal).pack(asid=ASID, addr=B)),
        ]
        for port, payload in operations:
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
    run(dut, bench, consumer, tracer(log, **outputs, taken=transfer(dut.request)
                                     | transfer(dut.signal) | transfer(dut.residency)),
        deadline_cycles=150)

    for edge, row in enumerate(log):
        waiting = [name for name in OUTPUTS if row[f"{name}_valid"] and not row[f"{name}_ready"]]
        assert not (waiting and row["taken"]), f"edge {edge}: taken while {waiting} waits"
        for name in waiting:
            assert log[edge + 1][f"{name}_valid"], f"edge {edge}: {name} dropped"
            assert log[edge + 1][f"{name}_payload"] == row[f"{name}_payload"]
    got = {name: [row[f"{name}_payload"] for row in log
                  if row[f"{name}_valid"] and row[f"{name}_ready"]] for name in OUTPUTS}
    assert len(edges(log, "taken")) == 10
    assert [codec(LockResponse).unpack(bits) for bits in got["response"]] == [
        {"status": status, "thread": thread} for status, thread in (
            (GRANTED, 1), (BLOCKED, 2), (BLOCKED, 3), (GRANTED, 1), (GRANTED, 2), (GRANTED, 3),
            (BLOCKED, 4))]
    assert ([codec(LockReleased).unpack(bits) for bits in got["released"]]
            == [released(0, 2).released])
    assert [codec(LockOsEvent).unpack(bits) for bits in got["os"]] == [
        to_os(NOT_RESIDENT, 3, A).os_event, to_os(BAD_SIGNAL, 0, A).os_event,
        to_os(NOT_RESIDENT, 4, B).os_event]


# Against the reference model ---------------------------------------------------------------------

def test_random_traffic_against_model(seed):
    """Requests, SIGNALs and residency updates offered at random on all three ports at once,
    outputs ready at random; the operations, in the order the table took them, replayed in the
    reference model give the same answers and events. A SIGNAL left waiting while it had its
    turn must be one the specification holds. Every request and residency update is taken, and
    every SIGNAL but one the table still holds at the end; every result comes out, once."""
    rng = random.Random(seed)
    params = dict(entries=4, waiters=3, contexts=2, count_bits=2)
    dut, model = LockTable(**params), LockTableModel(**params)
    log = []
    # Locks used as mutexes, and locks used for notification; now and then an operation of the
    # other kind (WRONG_KIND, BAD_SIGNAL) or by a stranger (NOT_OWNER).
    mutexes, events = [(1, A), (2, A), (1, C)], [(1, B), (2, B)]
    offered = set()     # the input ports whose operations have all been taken

    async def offer(ctx, name, payloads):
        port = getattr(dut, name)
        for payload in payloads:
            if rng.random() < 0.3:
                await ctx.tick().repeat(rng.randrange(1, 4))
            ctx.set(port.payload.as_value(), payload)
            ctx.set(port.valid, 1)
            while not (await ctx.tick().sample(port.ready))[2]:
                pass
            ctx.set(port.valid, 0)
        offered.add(name)

    # Who should hold each mutex next, as far as the requests alone tell: most RELEASEs come
    # from the owner, so that mutexes are handed over and freed.
    holders = {lock: [] for lock in mutexes}

    def random_request():
        thread = rng.randrange(1, 5)
        if rng.random() < 0.08:
            op, lock = rng.choice(list(LockOp)), rng.choice(mutexes + events)
        elif rng.random() < 0.55:
            lock = rng.choice(mutexes)
            queue = holders[lock]
            if queue and (len(queue) > 2 or rng.random() < 0.5):
                op, thread = RELEASE, queue.pop(0) if rng.random() < 0.9 else thread
            else:
                op = ACQUIRE
                queue.append(thread)
        else:
            op, lock = WAIT, rng.choice(events)
        return codec(LockRequest).pack(op=op, asid=lock[0], addr=lock[1], thread=thread)

    requests = [random_request() for _ in range(200)]
    signals = [codec(LockSignal).pack(asid=asid, addr=addr) for asid, addr in
               (rng.choice(events if rng.random() < 0.97 else mutexes) for _ in range(70))]
    updates = [codec(Residency).pack(context=rng.randrange(3), resident=rng.random() < 0.8,
                                     thread=rng.randrange(1, 5)) for _ in range(40)]

    @background
    async def consumer(ctx):
        while True:
            for name in OUTPUTS:
                ctx.set(getattr(dut, name).ready, rng.random() < 0.7)
            await ctx.tick()

    async def drain(ctx):
        # The log then holds every result: none may be missing.
        with waiting(ctx, "every operation to be taken or held and every result to come out"):
            while (not {"request", "residency"} <= offered
                   or not ("signal" in offered
                           or ctx.get(dut.signal.valid) and not ctx.get(dut.signal.ready))
                   or any(ctx.get(getattr(dut, name).valid) for name in OUTPUTS)):
                await ctx.tick()

    exprs = {}
    for name in OUTPUTS + ("request", "signal", "residency"):
        port = getattr(dut, name)
        exprs.update({f"{name}_valid": port.valid, f"{name}_ready": port.ready,
                      f"{name}_payload": Value.cast(port.payload)})
    async def core(ctx):
        await offer(ctx, "request", requests)

    # The run may end with a SIGNAL held for good (its count at the maximum, no WAIT left to
    # consume one; or no entry free): the checks below find whether the specification holds it.
    @background
    async def ni(ctx):
        await offer(ctx, "signal", signals)

    async def os(ctx):
        await offer(ctx, "residency", updates)

    run(dut, core, ni, os, consumer, drain, tracer(log, **exprs), deadline_cycles=900)

    def taken(row, name):
        return row[f"{name}_valid"] and row[f"{name}_ready"]

    want = {name: [] for name in OUTPUTS}
    got = {name: [row[f"{name}_payload"] for row in log if taken(row, name)] for name in OUTPUTS}
    problems = []
    for edge, row in enumerate(log):
        outputs_free = not any(row[f"{name}_valid"] and not row[f"{name}_ready"]
                               for name in OUTPUTS)
        if taken(row, "residency"):
            fields = codec(Residency).unpack(row["residency_payload"])
            model.residency(fields["context"], fields["resident"], fields["thread"])
            result = LockResult()
        elif taken(row, "signal"):
            result = model.signal(**codec(LockSignal).unpack(row["signal_payload"]))
            if result is None:
                problems.append(f"edge {edge}: took a SIGNAL the specification holds")
                continue
        elif taken(row, "request"):
            fields = codec(LockRequest).unpack(row["request_payload"])
            result = model.request(**fields)
            want["response"].append(codec(LockResponse).pack(status=result.status,
                                                             thread=fields["thread"]))
        else:
            if row["signal_valid"] and outputs_free:
                if model.signal(**codec(LockSignal).unpack(row["signal_payload"])) is not None:
                    problems.append(f"edge {edge}: held a SIGNAL the specification takes")
            continue
        if result.released is not None:
            want["released"].append(codec(LockReleased).pack(**result.released))
        if result.os_event is not None:
            want["os"].append(codec(LockOsEvent).pack(**result.os_event))
    assert sum(taken(row, "request") for row in log) == len(requests)
    assert sum(taken(row, "residency") for row in log) == len(updates)
    assert sum(taken(row, "signal") for row in log) == len(signals) or log[-1]["signal_valid"]
    for name in OUTPUTS:
        if got[name] != want[name]:
            problems.append(f"{name}: got {got[name]}, want {want[name]}")
    assert not problems, f"seed {seed}: {problems[:3]}"


# Parameters --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(entries=1), ValueError, "entries must be between 2 and 256, not 1"),
    (dict(entries=257), ValueError, "entries must be between 2 and 256, not 257"),
    (dict(waiters=0), ValueError, "waiters must be between 1 and 256, not 0"),
    (dict(waiters=257), ValueError, "waiters must be between 1 and 256, not 257"),
    (dict(contexts=0), ValueError, "contexts must be between 1 and 8, not 0"),
    (dict(contexts=9), ValueError, "contexts must be between 1 and 8, not 9"),
    (dict(count_bits=0), ValueError, "count_bits must be between 1 and 16, not 0"),
    (dict(count_bits=17), ValueError, "count_bits must be between 1 and 16, not 17"),
    (dict(entries=4.0), TypeError, "entries must be an integer, not 4.0"),
    (dict(waiters="8"), TypeError, "waiters must be an integer, not '8'"),
    (dict(contexts=True), TypeError, "contexts must be an integer, not True"),
    (dict(count_bits=None), TypeError, "count_bits must be an integer, not None"),
])
def test_rejects_bad_parameters(kwargs, error, message):
    with pytest.raises(error) as raised:
        LockTable(**kwargs)
    assert str(raised.value) == message


def test_accepts_the_largest_parameters():
    dut = LockTable(entries=256, waiters=256, contexts=8, count_bits=16)
    silence_unused(dut)                                               # not elaborated here
    assert (dut.entries, dut.waiters, dut.contexts, dut.count_bits) == (256, 256, 8, 16)


def test_smallest_table():
    """Two entries (one for the core, one kept for SIGNAL), one waiter slot, one context and a
    count of one bit."""
    dut = LockTable(entries=2, waiters=1, contexts=1, count_bits=1)
    assert (dut.entries, dut.waiters, dut.contexts, dut.count_bits) == (2, 1, 1, 1)
    table = Table(dut)
    results = []

    async def bench(ctx):
        await table.residency(ctx, 0, 2)
        results.append(await table.request(ctx, ACQUIRE, A, 1))
        results.append(await table.request(ctx, ACQUIRE, A, 2))
        results.append(await table.request(ctx, ACQUIRE, A, 3))      # no waiter slot
        results.append(await table.request(ctx, WAIT, B, 3))          # the reserve
        results.append(await table.signal(ctx, B))                    # count 1: the maximum
        results.append(await hold(ctx, dut, B, 3))
        ctx.set(dut.signal.valid, 0)
        results.append(await table.request(ctx, RELEASE, A, 1))
        results.append(await table.request(ctx, WAIT, B, 3))
        results.append(table.used(ctx))

    table.run(bench)
    assert results == [answered(GRANTED), answered(BLOCKED), answered(FULL), answered(FULL),
                       LockResult(), True, answered(GRANTED, released(0, 2)), answered(GRANTED),
                       (1, 0)]


from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from rtl.onehot import select


def test_select_of_the_table_logic_zero_extends_a_narrower_value():
    m = Module()
    one_hot, wide, narrow = Signal(2), Signal(4), Signal(2)
    result = select(m, one_hot, [wide, narrow], "result")
    seen = []

    async def bench(ctx):
        ctx.set(wide, 0b1010)
        ctx.set(narrow, 0b11)
        for selector in (0b01, 0b10, 0b00):
            ctx.set(one_hot, selector)
            seen.append(ctx.get(result))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0b1010, 0b0011, 0]


def test_default_parameters():
    dut = LockTable()
    assert (dut.entries, dut.waiters, dut.contexts, dut.count_bits) == (32, 32, 4, 8)
    silence_unused(dut)


def test_residency_payload_without_valid_changes_nothing():
    dut = small_table()
    table = Table(dut)
    results = []

    async def bench(ctx):
        await table.residency(ctx, 0, 6)
        # A source may leave anything on the payload while valid is low.
        ctx.set(Value.cast(dut.residency.payload),
                codec(Residency).pack(context=0, resident=0, thread=6))
        results.append(await table.request(ctx, WAIT, A, 6))
        results.append(await table.signal(ctx, A))

    table.run(bench)
    assert results == [answered(BLOCKED), released(0, 6)]


def test_parking_behind_an_owner_with_no_queue_leaves_the_other_queues_linked():
    """A's last waiter left slot 0, which B's queue then takes; a thread parking on A, whose queue
    is empty, must not link from A's old tail, B's slot 0."""
    dut = small_table(entries=3, waiters=3, contexts=1)
    table = Table(dut)
    results = []

    async def bench(ctx):
        for op, addr, thread in ((ACQUIRE, A, 1), (ACQUIRE, A, 2), (RELEASE, A, 1),
                                 (ACQUIRE, B, 3), (ACQUIRE, B, 4), (ACQUIRE, B, 5),
                                 (ACQUIRE, A, 6), (RELEASE, B, 3), (RELEASE, B, 4),
                                 (RELEASE, A, 2)):
            results.append(await table.request(ctx, op, addr, thread))

    table.run(bench)
    assert results == [
        answered(GRANTED), answered(BLOCKED), answered(GRANTED, to_os(NOT_RESIDENT, 2, A)),
        answered(GRANTED), answered(BLOCKED), answered(BLOCKED), answered(BLOCKED),
        answered(GRANTED, to_os(NOT_RESIDENT, 4, B)), answered(GRANTED, to_os(NOT_RESIDENT, 5, B)),
        answered(GRANTED, to_os(NOT_RESIDENT, 6, A))]


def test_occupancy_ports_count_from_zero_to_the_table_size():
    """``entries_used`` is ``range(entries + 1)`` and ``waiters_used`` ``range(waiters + 1)``:
    just wide enough for a full table (3 and 7: two and three bits)."""
    dut = LockTable(entries=3, waiters=7)
    members = dut.signature.members
    assert Shape.cast(members["entries_used"].shape) == Shape.cast(range(4)) == Shape(2)
    assert Shape.cast(members["waiters_used"].shape) == Shape.cast(range(8)) == Shape(3)
    silence_unused(dut)
