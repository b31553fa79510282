"""cocotb tests of the lock table (run them with ``smtni sim locktable``).

The knobs (``--param NAME=VALUE``) and their defaults are in :mod:`tb.testbenches`.
"""

import cocotb
from cocotb.triggers import ClockCycles

from rtl.layouts import LockKind, LockOp

from .component_tb import knobs, seed_for
from .locktable_tb import LockTableTB
from .runner import record_result
from .stream import cycle


@cocotb.test()
@cocotb.parametrize(backpressure=[False, True])
async def random_operations(dut, backpressure):
    """Random ACQUIRE, RELEASE, WAIT, SIGNAL and residency changes from many threads on a few
    locks, against the model: every answer, hand-over, wake-up and OS hand-off as predicted,
    including FULL tables, held SIGNALs and operations on the wrong kind of lock."""
    options = knobs("locktable")
    name = f"random_operations/backpressure={backpressure}"
    tb = LockTableTB(dut, seed=seed_for(name),
                     ready_percent=options["ready_percent"] if backpressure else 100)
    await tb.start()
    # More locks than entries and more threads than waiter slots, so that FULL happens.
    locks = [(tb.rng.randrange(4), tb.rng.getrandbits(46) << 2)
             for _ in range(tb.params["entries"] + 4)]
    mutexes, events = locks[:len(locks) // 3], locks[len(locks) // 3:]
    threads = list(range(tb.params["waiters"] + 8))
    for context in range(tb.params["contexts"]):
        tb.set_residency(context, 1, threads[context])
    operations = options["operations"]
    while tb.counts["requests"] + tb.counts["signals"] < operations:
        for _ in range(8):
            tb.random_operation(mutexes, events, threads)
        await ClockCycles(dut.clk, 8)
        if len(tb.signal) > 16 or tb.rng.random() < 0.02:
            await _settle(tb, locks)
    await _settle(tb, locks)
    tb.check()
    figures = tb.figures()
    for status in ("GRANTED", "BLOCKED", "FULL", "NOT_OWNER", "WRONG_KIND"):
        assert figures["statuses"].get(status), f"no {status} answer: {figures['statuses']}"
    assert figures["counts"]["released"] and figures["counts"]["os"], figures["counts"]
    record_result(name, figures)


async def _settle(tb, locks):
    """Wait until every queued operation is taken. A SIGNAL waits while the table is full or
    its count is at the maximum; then, as software would, owners release their mutexes and
    threads consume remembered signals, until it is taken."""
    deadline = cycle() + 1000 * (tb.outstanding + len(locks))
    while tb.outstanding:
        before = tb.outstanding
        await ClockCycles(tb.dut.clk, 32)
        assert cycle() < deadline, f"{tb.outstanding} operations or results still outstanding"
        if tb.outstanding < before or not len(tb.signal) or len(tb.request):
            continue
        for asid, addr in locks:
            if tb.model.kind(asid, addr) is LockKind.MUTEX:
                tb.lock_request(LockOp.RELEASE, asid, addr, tb.model.owner(asid, addr))
            elif tb.model.count(asid, addr):
                tb.lock_request(LockOp.WAIT, asid, addr, 0)


@cocotb.test()
async def rate_and_signal_latency(dut):
    """One operation per cycle with the outputs always taken; a SIGNAL offered in the same
    cycle as a request wakes its parked thread's ``released`` event within 2 cycles."""
    tb = LockTableTB(dut, seed=seed_for("rate_and_signal_latency"))
    await tb.start()
    tb.set_residency(0, 1, 7)
    await tb.drain(timeout_cycles=100)
    arrivals = []
    tb.on_response = lambda fields, when: arrivals.append(when)
    for thread in range(16):
        tb.lock_request(LockOp.ACQUIRE, 1, 0x1000 + 8 * thread, thread)
    await tb.drain(timeout_cycles=200)
    assert arrivals == list(range(arrivals[0], arrivals[0] + 16)), arrivals

    # Thread 7 parks on a notification lock; a SIGNAL then races a request for the table.
    tb.lock_request(LockOp.WAIT, 1, 0x8000, 7)
    await tb.drain(timeout_cycles=100)
    woken = []
    tb.on_released = lambda fields, when: woken.append(when)
    await ClockCycles(dut.clk, 3)
    tb.lock_request(LockOp.ACQUIRE, 1, 0x9000, 20)
    tb.lock_signal(1, 0x8000)
    offered = cycle() + 1
    await tb.drain(timeout_cycles=100)
    tb.check()
    latency = woken[0] - offered
    assert latency <= 2, f"SIGNAL offered at {offered}, released taken at {woken[0]}"
    record_result("rate_and_signal_latency",
                  {**tb.figures(), "signal_to_released_cycles": latency})
