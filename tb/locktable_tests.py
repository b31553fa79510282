"""cocotb tests of the lock table (run them with ``smtni sim locktable``).

The knobs (``--param NAME=VALUE``) and their defaults are in :mod:`tb.testbenches`.
"""

import cocotb
from cocotb.triggers import ClockCycles

from behavioral.core import Acquire, Compute, Load, Release, Store, Wait
from rtl.layouts import LockKind, LockOp, LockStatus

from .component_tb import knobs, seed_for
from .core_driver import CoreDriver
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
    for op in (LockOp.ACQUIRE, LockOp.RELEASE):
        for thread in range(16):
            tb.lock_request(op, 1, 0x1000 + 8 * thread, thread)
    await tb.drain(timeout_cycles=200)
    assert arrivals == list(range(arrivals[0], arrivals[0] + 32)), arrivals

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


class _CoreLockPort:
    """The core's lock port on the table's ``request`` stream."""

    def __init__(self, tb):
        self._tb = tb

    def request(self, op, asid, addr, thread):
        self._tb.lock_request(op, asid, addr, thread)


def _core_on_table(tb, **os_params):
    """Return a :class:`~tb.core_driver.CoreDriver` whose core and OS drive the lock table."""
    driver = CoreDriver(tb.ports, lock_port=_CoreLockPort(tb),
                        on_residency=lambda context, resident, thread, evictable:
                        tb.set_residency(context, resident, thread),
                        core_params={"contexts": tb.params["contexts"]},
                        os_params={"switch_cycles": 20, "deliver_cycles": 30,
                                   "spawn_cycles": 40, **os_params})

    def answer(fields, when):
        driver.sync()
        driver.core.lock_response(fields["thread"], fields["status"])

    def released(fields, when):
        driver.sync()
        driver.core.lock_released(**fields)

    def to_os(fields, when):
        driver.sync()
        driver.os.lock_event(fields)

    tb.on_response, tb.on_released, tb.on_os = answer, released, to_os
    return driver


def _retrying(operation):
    """Issue the lock ``operation`` until the table has room for it (FULL: try again a little
    later, as software would), and return its answer."""
    while True:
        status = yield operation
        if status is not LockStatus.FULL:
            return status
        yield Compute(16)


async def _run_threads(tb, driver, threads, timeout_cycles):
    """Wait until every thread of ``threads`` (Thread objects) has exited."""
    await tb.wait_until(lambda: all(thread.exited for thread in threads), timeout_cycles,
                        lambda: f"threads still running: "
                                f"{[thread for thread in threads if not thread.exited][:4]}")
    await tb.drain(timeout_cycles=1000)


@cocotb.test()
@cocotb.parametrize(oversubscribed=[False, True])
async def mutex_contention(dut, oversubscribed):
    """Threads of the core model take turns in a critical section guarded by one mutex:
    never two inside at once, the shared counter exact, and the mutex handed over in the order
    the threads parked. Oversubscribed: more threads than contexts, so the OS preempts parked
    threads and hand-overs to them go through the OS."""
    name = f"mutex_contention/oversubscribed={oversubscribed}"
    tb = LockTableTB(dut, seed=seed_for(name))
    driver = _core_on_table(tb, tick_cycles=400)
    await tb.start()
    rng, asid, lock, counter_pa = tb.rng, 3, 0x4000_0000, 0x1000
    inside, parked_order, handed_order = [], [], []
    tb_answer = tb.on_response

    def answer(fields, when):
        if fields["status"] is LockStatus.BLOCKED:
            parked_order.append(fields["thread"])
        tb_answer(fields, when)
    tb.on_response = answer
    tb_released = tb.on_released

    def released(fields, when):
        handed_order.append(fields["thread"])
        tb_released(fields, when)
    tb.on_released = released
    tb_os = tb.on_os

    def to_os(fields, when):
        handed_order.append(fields["thread"])
        tb_os(fields, when)
    tb.on_os = to_os

    def worker(tid, rounds):
        for _ in range(rounds):
            status = yield from _retrying(Acquire(lock))
            assert status is LockStatus.GRANTED, f"thread {tid}: {status}"
            assert not inside, f"thread {tid} entered while {inside} is inside"
            inside.append(tid)
            value = yield Load(counter_pa)
            yield Compute(rng.randrange(1, 12))
            yield Store(counter_pa, value + 1)
            inside.remove(tid)
            assert (yield Release(lock)) is LockStatus.GRANTED
            # Outside no longer than inside, so that the mutex is contended and handed over
            # (with up to 30 cycles outside, seed 496918391 gave 58 hand-overs in 60 rounds).
            yield Compute(rng.randrange(0, 12))

    count = tb.params["contexts"] + (2 if oversubscribed else 0)
    rounds = 60
    threads = [driver.os.create_thread(tid, asid, worker(tid, rounds)) for tid in range(count)]
    driver.wake()
    await _run_threads(tb, driver, threads, timeout_cycles=4000 * rounds * count)
    tb.check()
    assert driver.core.memory.load(counter_pa)[0] == rounds * count
    assert handed_order == parked_order, (parked_order, handed_order)
    figures = {**tb.figures(), "threads": count, "rounds": rounds,
               "hand_overs": len(handed_order), "os": dict(driver.os.counters)}
    assert figures["hand_overs"] > rounds, figures
    if oversubscribed:
        assert figures["counts"]["os"] and driver.os.counters["preemptions"], figures
    record_result(name, figures)


@cocotb.test()
@cocotb.parametrize(oversubscribed=[False, True])
async def wait_against_signal(dut, oversubscribed):
    """Threads of the core model WAIT on their notification locks while the NI side SIGNALs
    them at random moments, often in the same cycle as a WAIT: every thread wakes exactly once
    per SIGNAL (never before the SIGNAL is taken: no spurious wake-up; never missing one: no
    lost wake-up), and the table ends empty. Oversubscribed: more threads than contexts, so
    wake-ups of preempted threads go through the OS."""
    options = knobs("locktable")
    name = f"wait_against_signal/oversubscribed={oversubscribed}"
    tb = LockTableTB(dut, seed=seed_for(name))
    driver = _core_on_table(tb, tick_cycles=300)
    await tb.start()
    rng, asid = tb.rng, 5
    count = tb.params["contexts"] + (2 if oversubscribed else 0)
    locks = [0x7000_0000 + 64 * tid for tid in range(count)]
    total = options["interleavings"] // (2 if oversubscribed else 1)
    targets = [rng.randrange(count) for _ in range(total)]
    woken = [0] * count

    def waiter(tid, waits):
        for _ in range(waits):
            status = yield from _retrying(Wait(locks[tid]))
            woken[tid] += 1
            signalled = tb.signalled[asid, locks[tid]]
            assert status is LockStatus.GRANTED, f"thread {tid}: {status}"
            assert woken[tid] <= signalled, (f"thread {tid} woke {woken[tid]} times on "
                                             f"{signalled} SIGNALs")
            yield Compute(rng.choice((1, 1, 2, 5, 20)))

    threads = [driver.os.create_thread(tid, asid, waiter(tid, targets.count(tid)))
               for tid in range(count)]
    driver.wake()
    for target in targets:
        tb.lock_signal(asid, locks[target])
        await ClockCycles(dut.clk, rng.choice((1, 1, 2, 3, 8, 30)))
    await _run_threads(tb, driver, threads, timeout_cycles=2000 * total)
    tb.check()
    signalled = [tb.signalled[asid, lock] for lock in locks]
    assert woken == signalled == [targets.count(tid) for tid in range(count)], (woken, signalled)
    # Races: a SIGNAL offered to the table at the same edge as a WAIT on the same lock.
    waits = {(offered, addr) for offered, op, _, addr in tb.offers if op is LockOp.WAIT}
    races = sum((offered, addr) in waits for offered, op, _, addr in tb.offers
                if op == "SIGNAL")
    assert tb.model.free_entries == tb.params["entries"], "remembered SIGNALs left over"
    figures = {**tb.figures(), "threads": count, "interleavings": total,
               "same_cycle_races": races, "os": dict(driver.os.counters)}
    assert races, "no SIGNAL met a WAIT on its lock in the same cycle"
    if oversubscribed:
        assert figures["counts"]["os"], figures
    record_result(name, figures)


@cocotb.test()
async def wake_latency(dut):
    """A thread parked in WAIT: cycles from the SIGNAL offered to the table to the thread's
    first instruction (the lock table's share of LOCK-mode notification latency)."""
    tb = LockTableTB(dut, seed=seed_for("wake_latency"))
    driver = _core_on_table(tb)
    await tb.start()
    lock, rounds = 0x5000, 32

    def waiter():
        for _ in range(rounds):
            yield Wait(lock)
            yield Compute(4)

    thread = driver.os.create_thread(9, 1, waiter())
    driver.wake()
    latencies = []
    for _ in range(rounds):
        await ClockCycles(dut.clk, 100)           # parked by now
        tb.lock_signal(1, lock)
        offered = cycle() + 1
        before = len(driver.resumes)
        await tb.wait_until(lambda: len(driver.resumes) > before, 100, lambda: "no wake-up")
        tid, first, reason = driver.resumes[-1]
        assert (tid, reason) == (9, "released"), driver.resumes[-1]
        latencies.append(first - offered)
    await _run_threads(tb, driver, [thread], timeout_cycles=1000)
    tb.check()
    assert max(latencies) <= 2, latencies
    record_result("wake_latency", {**tb.figures(), "signal_to_first_instruction_cycles":
                                   sorted(set(latencies))})
