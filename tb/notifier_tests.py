"""cocotb tests of the Notifier (run them with ``smtni sim notifier``).

The knobs (``--param NAME=VALUE``) and their defaults are in :mod:`tb.testbenches`.
"""

import cocotb
from cocotb.triggers import ClockCycles

from behavioral.core import Compute, Load, SMTCore, Store, Thread
from rtl.layouts import ENDPOINT_BITS, HandlerReturnOp, NotifyMode, NotifyOsReason

from .component_tb import knobs, seed_for
from .core_driver import CoreDriver
from .notifier_tb import NotifierTB
from .runner import record_result
from .stream import cycle

#: Where the tests' handler lives (the handler table maps it to a Python generator function).
HANDLER_PC = 0x40_0000


def _random_endpoint(rng, threads):
    return dict(mode=rng.choice(list(NotifyMode)), asid=rng.randrange(4),
                thread=rng.choice(threads), lock=rng.getrandbits(46) << 2,
                handler_pc=rng.getrandbits(46) << 2, stack=rng.getrandbits(44) << 4)


@cocotb.test()
@cocotb.parametrize(backpressure=[False, True])
async def random_arrivals(dut, backpressure):
    """Random completions (every mode, unknown endpoints), handler returns and exits, and
    table rewrites, against the model: every event, signal and OS hand-off as predicted, the
    queues delivered in order, the counters equal."""
    options = knobs("notifier")
    name = f"random_arrivals/backpressure={backpressure}"
    tb = NotifierTB(dut, seed=seed_for(name),
                    ready_percent=options["ready_percent"] if backpressure else 100)
    await tb.start()
    rng, endpoints, contexts = tb.rng, tb.params["endpoints"], tb.params["contexts"]
    threads = list(range(contexts + 3))
    for index in range(endpoints):
        tb.write_endpoint(index, **_random_endpoint(rng, threads))
    for index in range(contexts):
        tb.write_context(index, busy=1, evictable=rng.random() < 0.5, thread=threads[index])
    while tb.counts["completions"] < options["arrivals"]:
        for _ in range(8):
            roll = rng.random()
            if roll < 0.6:
                endpoint = rng.randrange(endpoints + 1 if endpoints < 16 else endpoints)
                tb.complete(endpoint, rng.getrandbits(46) << 2)
            elif roll < 0.85:
                in_handler = [e for e in range(endpoints) if tb.model.in_handler(e)]
                endpoint = rng.choice(in_handler) if in_handler and rng.random() < 0.95 \
                    else rng.randrange(1 << ENDPOINT_BITS)
                tb.returned(HandlerReturnOp.RETURN, endpoint, rng.randrange(contexts))
            elif roll < 0.95:
                tb.returned(HandlerReturnOp.EXIT, context=rng.randrange(contexts))
            elif roll < 0.98:
                tb.write_context(rng.randrange(contexts), busy=rng.random() < 0.8,
                                 evictable=rng.random() < 0.5, thread=rng.choice(threads))
            else:
                tb.write_endpoint(rng.randrange(endpoints), **_random_endpoint(rng, threads))
        await ClockCycles(dut.clk, 8)
    await tb.drain(timeout_cycles=100 * tb.outstanding + 1000)
    tb.check()
    figures = tb.figures()
    idle = [path for path, count in figures["counters"].items() if not count]
    assert not idle, f"paths never taken: {idle}; counters {figures['counters']}"
    record_result(name, figures)


class _CoreNotifierPort:
    """The core's notifier port on the Notifier's ``handler_return`` stream."""

    def __init__(self, tb):
        self._tb = tb

    def handler_return(self, op, endpoint, context):
        self._tb.returned(op, endpoint, context)


def _core_on_notifier(tb, handlers, **os_params):
    """Return a :class:`~tb.core_driver.CoreDriver` whose core and OS take the Notifier's
    events, with the handler table ``handlers`` (PC -> generator function of the entry)."""
    driver = CoreDriver(tb.ports, notifier_port=_CoreNotifierPort(tb),
                        on_residency=lambda context, resident, thread, evictable:
                        tb.write_context(context, busy=resident, evictable=evictable,
                                         thread=thread),
                        on_endpoint=lambda index, fields: tb.write_endpoint(index, **fields),
                        core_params={"contexts": tb.params["contexts"], "handlers": handlers},
                        os_params={"switch_cycles": 20, "deliver_cycles": 30,
                                   "spawn_cycles": 40, **os_params})

    def event(fields, when):
        driver.sync()
        driver.core.notify(fields)

    def to_os(fields, when):
        driver.sync()
        driver.os.notify_event(fields)

    tb.on_event, tb.on_os = event, to_os
    return driver


def _recording_handler(log, instructions=20):
    """Return a handler (generator function of the entry) that logs its entry and computes."""
    def handler(entry):
        log.append(entry)
        yield Compute(instructions)
    return handler


def _computation(rounds, base_pa):
    """A thread's work whose result depends on every step and on memory: a register-and-memory
    hash the handlers must not disturb."""
    value = 0x9E3779B97F4A7C15
    for step in range(rounds):
        yield Compute(3)
        yield Store(base_pa + 8 * (step % 16), value)
        loaded = yield Load(base_pa + 8 * (step * 7 % 16))
        value = (value * 6364136223846793005 + loaded + step) % (1 << 64)
    return value


def _uninterrupted(body):
    """Return the result of ``body`` run alone on a core of the model, with nothing arriving."""
    core = SMTCore(contexts=1)
    thread = Thread(0, 0, body)
    core.load_thread(0, thread)
    core.run_until(lambda: thread.exited, max_cycles=10_000_000)
    return thread.result


@cocotb.test()
async def branch_into_computation(dut):
    """Arrivals BRANCH into a thread that is computing: its result equals the uninterrupted
    run's; arrivals during a handler wait and are delivered in arrival order, one per RETURN;
    those that overflow the queue reach the OS and run once each."""
    tb = NotifierTB(dut, seed=seed_for("branch_into_computation"))
    handled = []
    driver = _core_on_notifier(tb, {HANDLER_PC: _recording_handler(handled)})
    await tb.start()
    rng, rounds = tb.rng, 3000
    thread = driver.os.create_thread(7, 2, _computation(rounds, 0x2000))
    driver.os.set_endpoint(0, NotifyMode.BRANCH, asid=2, thread=7, handler_pc=HANDLER_PC)
    driver.wake()
    branched = []
    tb_event = tb.on_event

    def event(fields, when):
        branched.append(fields["entry"])
        tb_event(fields, when)
    tb.on_event = event
    arrivals = []
    tb.on_completion = lambda fields, when: arrivals.append(fields["entry"])
    await ClockCycles(dut.clk, 100)
    entries = [0x1000_0000 + 64 * n for n in range(200)]
    for entry in entries:
        tb.complete(0, entry)
        # Bursts, so that arrivals find the handler running and the queue full.
        await ClockCycles(dut.clk, rng.choice((1, 1, 2, 5, 40, 200)))
    await tb.wait_until(lambda: thread.exited, 100 * rounds, lambda: "the computation runs on")
    await tb.drain(timeout_cycles=1000)
    tb.check()
    counters = tb.counters()
    assert thread.result == _uninterrupted(_computation(rounds, 0x2000))
    assert sorted(handled) == sorted(entries), "an arrival was lost or delivered twice"
    by_os = [entry for entry in arrivals if entry not in branched]
    assert branched == [entry for entry in arrivals if entry not in by_os], "out of order"
    assert counters["queued"] and counters["os"], counters
    assert counters["branch"] + counters["os"] == len(entries), counters
    assert driver.os.delivered[NotifyOsReason.QUEUE_OVERFLOW] == counters["os"]
    record_result("branch_into_computation",
                  {**tb.figures(), "notification_cycles": thread.notification_cycles,
                   "instructions": thread.instructions})


@cocotb.test()
async def spawn_paths(dut):
    """SPAWN with a free context, with only an evictable one, and with none (the OS starts it
    when a context frees): every arrival's handler runs exactly once; evicted threads finish."""
    tb = NotifierTB(dut, seed=seed_for("spawn_paths"))
    handled = []
    driver = _core_on_notifier(tb, {HANDLER_PC: _recording_handler(handled, 200)})
    await tb.start()
    contexts = tb.params["contexts"]
    driver.os.set_endpoint(1, NotifyMode.SPAWN, asid=4, thread=40, handler_pc=HANDLER_PC,
                           stack=0x7FFF_0000)
    entries = iter(0x2000_0000 + 64 * n for n in range(1000))
    sent = []

    async def arrive(count, gap):
        for _ in range(count):
            sent.append(next(entries))
            tb.complete(1, sent[-1])
            await ClockCycles(tb.dut.clk, gap)

    # Free contexts: one long thread leaves contexts - 1 free.
    workers = [driver.os.create_thread(0, 4, _computation(400, 0x3000))]
    driver.wake()
    await ClockCycles(dut.clk, 50)
    await arrive(contexts - 1, 1)
    await tb.wait_until(lambda: len(handled) == len(sent)
                        and len(driver.core.free_contexts()) == contexts - 1, 5000,
                        lambda: "spawned handlers still running")
    # Only evictable contexts left: the rest filled with evictable threads.
    workers += [driver.os.create_thread(tid, 4, _computation(300, 0x3000 + 0x100 * tid),
                                        evictable=True) for tid in range(1, contexts)]
    driver.wake()
    await ClockCycles(dut.clk, 100)
    evictions = min(2, contexts - 1)
    await arrive(evictions, 1)
    # No context at all: every context busy with a thread that may not be evicted.
    await tb.wait_until(lambda: all(thread.exited for thread in workers), 200_000,
                        lambda: "workers still running")
    workers = [driver.os.create_thread(tid, 4, _computation(200, 0x4000 + 0x100 * tid))
               for tid in range(10, 10 + contexts)]
    driver.wake()
    await ClockCycles(dut.clk, 100)
    await arrive(3, 2)
    await tb.wait_until(lambda: all(thread.exited for thread in workers)
                        and len(handled) == len(sent), 200_000,
                        lambda: f"{len(sent) - len(handled)} handlers not run")
    await tb.drain(timeout_cycles=1000)
    tb.check()
    counters = tb.counters()
    assert sorted(handled) == sorted(sent), "an arrival was lost or delivered twice"
    assert (counters["spawn"], counters["evict"], counters["os"]) == (contexts - 1, evictions, 3), \
        counters
    assert driver.os.delivered[NotifyOsReason.NO_CONTEXT] == 3
    record_result("spawn_paths", {**tb.figures(), "os": dict(driver.os.counters)})


@cocotb.test()
async def not_resident(dut):
    """A BRANCH for a thread that is in no context goes to the OS, which runs the handler once,
    before the thread goes on, when the thread is next scheduled."""
    tb = NotifierTB(dut, seed=seed_for("not_resident"))
    handled = []
    driver = _core_on_notifier(tb, {HANDLER_PC: _recording_handler(handled)})
    await tb.start()
    contexts = tb.params["contexts"]
    busy = [driver.os.create_thread(tid, 1, _computation(150, 0x5000 + 0x100 * tid))
            for tid in range(contexts)]
    late = driver.os.create_thread(50, 1, _computation(50, 0x6000))
    driver.os.set_endpoint(2, NotifyMode.BRANCH, asid=1, thread=50, handler_pc=HANDLER_PC)
    driver.wake()
    await ClockCycles(dut.clk, 60)
    assert late.context is None
    tb.complete(2, 0xABC0)
    await tb.wait_until(lambda: late.exited and all(t.exited for t in busy), 200_000,
                        lambda: "threads still running")
    await tb.drain(timeout_cycles=1000)
    tb.check()
    assert handled == [0xABC0]
    assert tb.counters()["os"] == 1 and driver.os.delivered[NotifyOsReason.NOT_RESIDENT] == 1
    assert late.result == _uninterrupted(_computation(50, 0x6000))
    record_result("not_resident", tb.figures())


@cocotb.test()
async def notification_latency(dut):
    """Cycles from a completion offered to the Notifier to the woken code's first instruction:
    BRANCH into a running thread and SPAWN on a free context; for LOCK, to the SIGNAL leaving
    for the lock table (whose own SIGNAL-to-first-instruction share the lock-table testbench
    measures)."""
    tb = NotifierTB(dut, seed=seed_for("notification_latency"))
    driver = _core_on_notifier(tb, {HANDLER_PC: _recording_handler([], 4)})
    await tb.start()
    driver.os.create_thread(3, 1, _computation(100_000, 0x7000))
    driver.os.set_endpoint(0, NotifyMode.BRANCH, asid=1, thread=3, handler_pc=HANDLER_PC)
    driver.os.set_endpoint(1, NotifyMode.SPAWN, asid=1, thread=60, handler_pc=HANDLER_PC)
    driver.os.set_endpoint(2, NotifyMode.LOCK, asid=1, lock=0x9000)
    signals = []
    tb.on_signal = lambda fields, when: signals.append(when)
    driver.wake()
    await ClockCycles(dut.clk, 100)
    latencies = {"branch": [], "spawn": [], "lock_signal": []}
    for _ in range(16):
        for endpoint, mode in ((0, "branch"), (1, "spawn"), (2, "lock_signal")):
            tb.complete(endpoint, 0x100)
            offered = cycle() + 1
            before = len(driver.resumes), len(signals)
            await ClockCycles(dut.clk, 60)
            if mode == "lock_signal":
                assert len(signals) == before[1] + 1
                latencies[mode].append(signals[-1] - offered)
            else:
                resumes = driver.resumes[before[0]:]
                assert [reason for _, _, reason in resumes] == [mode], resumes
                latencies[mode].append(resumes[0][1] - offered)
    await tb.drain(timeout_cycles=1000)
    tb.check()
    figures = {mode: sorted(set(values)) for mode, values in latencies.items()}
    assert max(max(values) for values in latencies.values()) <= 10, figures
    record_result("notification_latency", {**tb.figures(), "latency_cycles": figures})
