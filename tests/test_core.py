"""The behavioural SMT core: issue, stalls, lock ops, notifications, accounting, parameters."""

import re

import pytest

from behavioral.core import (POLICIES, Acquire, Compute, Exit, FlatMemory, Load, MmioRead,
                             MmioWrite, Release, SMTCore, Store, Thread, Wait)
from behavioral.locktable import LockTableModel
from behavioral.memory import SparseMemory
from rtl.layouts import (HandlerReturnOp, LockOp, LockOsReason, LockStatus, NotifyEventKind,
                         NotifyOsReason)

RETURN, EXIT = HandlerReturnOp.RETURN, HandlerReturnOp.EXIT


# Fakes and helpers --------------------------------------------------------------------------------

class FakeLockPort:
    """Records requests; the test answers them."""

    def __init__(self):
        self.requests = []

    def request(self, op, asid, addr, thread):
        self.requests.append((op, asid, addr, thread))


class FakeNotifierPort:
    def __init__(self):
        self.returns = []

    def handler_return(self, op, endpoint, context):
        self.returns.append((op, endpoint, context))


class FakeOS:
    """Records what the core hands to the OS."""

    def __init__(self, asid=9):
        self.asid = asid
        self.evicted_threads, self.exited, self.notify_events, self.lock_events = [], [], [], []

    def evicted(self, thread):
        self.evicted_threads.append(thread)

    def thread_exited(self, thread):
        self.exited.append(thread)

    def notify_event(self, event):
        self.notify_events.append(event)

    def lock_event(self, event):
        self.lock_events.append(event)

    def endpoint(self, index):
        return {"asid": self.asid}


class LockTablePort:
    """The lock-table reference model behind the core's lock port, answering at once."""

    def __init__(self, contexts):
        self.table = LockTableModel(contexts=contexts)
        self.core = None

    def request(self, op, asid, addr, thread):
        result = self.table.request(op, asid, addr, thread)
        self.core.lock_response(thread, result.status)
        if result.released is not None:
            self.core.lock_released(**result.released)
        assert result.os_event is None

    def residency(self, context, resident, thread, evictable):
        self.table.residency(context, resident, thread)


def spin():
    """A thread that computes forever."""
    while True:
        yield Compute(1000)


def crunch(base, rounds=6):
    """Loads, computes and stores; returns a value that depends on every step's order."""
    total = 0
    for index in range(rounds):
        yield Compute(5)
        value = yield Load(base + 8 * index)
        total = (total * 3 + value) % (1 << 64)
    yield Store(0x2000, total)
    return total


def filled_memory():
    memory = SparseMemory()
    for index in range(8):
        memory.write_word(0x100 + 8 * index, 10 + index * index)
    return memory


def expected_crunch():
    total = 0
    for index in range(6):
        total = total * 3 + 10 + index * index
    return total


def branch(context=0, thread=1, endpoint=3, pc=0x400, entry=0x9000):
    return {"kind": NotifyEventKind.BRANCH, "evict": 0, "context": context, "thread": thread,
            "evicted": 0, "endpoint": endpoint, "pc": pc, "sp": 0, "entry": entry}


def spawn(context=0, thread=7, evict=0, evicted=0, endpoint=2, pc=0x500, entry=0x9100):
    return {"kind": NotifyEventKind.SPAWN, "evict": evict, "context": context, "thread": thread,
            "evicted": evicted, "endpoint": endpoint, "pc": pc, "sp": 0x7000, "entry": entry}


def per_cycle_issue(core, threads, cycles):
    """Step ``cycles`` times; return the instructions each thread issued in each cycle."""
    history = []
    for _ in range(cycles):
        before = [t.instructions + t.handler_instructions for t in threads]
        core.step()
        history.append([t.instructions + t.handler_instructions - b
                        for t, b in zip(threads, before)])
    return history


def stamps(core):
    seen = []
    core.on_resume(lambda thread, cycle, reason: seen.append((thread.tid, cycle, reason)))
    return seen


# Issue --------------------------------------------------------------------------------------------

def test_compute_results_and_latency_of_a_lone_thread():
    memory = filled_memory()
    core = SMTCore(contexts=2, issue_width=2, memory=memory, load_cycles=2)
    thread = Thread(1, 0, crunch(0x100))
    core.load_thread(0, thread)
    core.run_until(lambda: thread.exited, 200)
    assert thread.result == expected_crunch() == memory.read_word(0x2000)
    # Per round: Compute(5) and the load in 3 two-wide cycles, then a 2-cycle stall.
    assert thread.instructions == 6 * 6 + 1
    assert (thread.issued_cycles, thread.stalled_cycles) == (6 * 3 + 1, 6 * 2 + 2)
    assert thread.resident_cycles == thread.issued_cycles + thread.stalled_cycles
    assert core.free_contexts() == [0, 1]


def test_a_lone_ready_thread_takes_every_slot():
    core = SMTCore(contexts=4, issue_width=3)
    thread = Thread(1, 0, (x for x in [Compute(9)]))
    core.load_thread(2, thread)
    assert per_cycle_issue(core, [thread], 3) == [[3], [3], [3]]
    core.step()
    assert thread.exited and thread.instructions == 9


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("threads, width", [(4, 2), (3, 2), (2, 1), (4, 3), (3, 4)])
def test_issue_is_fair_and_never_exceeds_the_width(policy, threads, width):
    core = SMTCore(contexts=4, issue_width=width, policy=policy)
    running = [Thread(tid, 0, spin()) for tid in range(threads)]
    for context, thread in enumerate(running):
        core.load_thread(context, thread)
    history = per_cycle_issue(core, running, 240)
    assert all(sum(cycle) == width for cycle in history)
    totals = [thread.instructions for thread in running]
    assert max(totals) - min(totals) <= 1, totals
    assert all(t.issued_cycles + t.ready_cycles == 240 for t in running)


def test_round_robin_rotates_the_start_every_cycle():
    core = SMTCore(contexts=3, issue_width=1, policy="round_robin")
    running = [Thread(tid, 0, spin()) for tid in range(3)]
    for context, thread in enumerate(running):
        core.load_thread(context, thread)
    winners = [cycle.index(1) for cycle in per_cycle_issue(core, running, 6)]
    assert winners == [0, 1, 2, 0, 1, 2]


def test_icount_favours_a_thread_back_from_a_stall():
    def loader():
        while True:
            yield Load(0x100)

    # Width 1: under ICOUNT the loader, with few instructions in its window, issues as soon as
    # its stall ends, every time; under round robin it waits its turn behind the spinning threads.
    waited = {}
    for policy in POLICIES:
        core = SMTCore(contexts=3, issue_width=1, policy=policy, load_cycles=5)
        running = [Thread(0, 0, loader()), Thread(1, 0, spin()), Thread(2, 0, spin())]
        for context, thread in enumerate(running):
            core.load_thread(context, thread)
        core.run(300)
        waited[policy] = running[0].ready_cycles
    assert waited["icount"] == 0 < waited["round_robin"]


def test_stalled_and_empty_contexts_take_no_slot():
    def loads():
        while True:
            yield Load(0x100)

    core = SMTCore(contexts=4, issue_width=2, load_cycles=3)
    spinner, loader = Thread(1, 0, spin()), Thread(2, 0, loads())
    core.load_thread(1, spinner)
    core.load_thread(3, loader)
    history = per_cycle_issue(core, [spinner, loader], 40)
    # The loader issues one load every 4 cycles; the spinner takes every other slot.
    assert [cycle[1] for cycle in history[:8]] == [1, 0, 0, 0, 1, 0, 0, 0]
    assert all(sum(cycle) == 2 for cycle in history)
    assert loader.stalled_cycles == 30 and loader.issued_cycles == 10


def test_memory_object_protocol():
    class SlowMemory:
        def __init__(self):
            self.calls = []

        def load(self, addr):
            self.calls.append(("load", addr))
            return addr + 1, 5

        def store(self, addr, value):
            self.calls.append(("store", addr, value))
            return 1

    def body():
        value = yield Load(0x40)
        yield Store(0x48, value)
        return value

    memory = SlowMemory()
    core = SMTCore(contexts=1, memory=memory)
    thread = Thread(1, 0, body())
    core.load_thread(0, thread)
    core.run_until(lambda: thread.exited, 50)
    assert thread.result == 0x41 and memory.calls == [("load", 0x40), ("store", 0x48, 0x41)]
    assert thread.stalled_cycles == 5 + 1


def test_outside_memory_answers_when_done():
    class OutsideMemory:
        def __init__(self):
            self.requests = []

        def request(self, write, addr, value, tag):
            self.requests.append((write, addr, value, tag))

    def body(base):
        value = yield Load(base)
        yield Store(base + 8, value + 1)
        return value

    memory = OutsideMemory()
    core = SMTCore(contexts=2, memory=memory)
    # Two threads of one id (as SPAWNed handlers of an endpoint are): answers go by tag.
    first, second = Thread(3, 0, body(0x40)), Thread(3, 0, body(0x80))
    core.load_thread(0, first)
    core.load_thread(1, second)
    core.run(4)
    (_, addr_a, _, tag_a), (_, addr_b, _, tag_b) = memory.requests
    assert {addr_a, addr_b} == {0x40, 0x80} and tag_a != tag_b
    answers = {0x40: 0x99, 0x80: 0x11}
    core.memory_response(tag_b, answers[addr_b])       # the later access answers first
    core.memory_response(tag_a, answers[addr_a])
    core.run(2)
    stores = {addr: (value, tag) for write, addr, value, tag in memory.requests[2:]}
    assert stores[0x48][0] == 0x9A and stores[0x88][0] == 0x12
    for _, tag in stores.values():
        core.memory_response(tag)
    core.step()
    assert (first.result, second.result) == (0x99, 0x11)
    with pytest.raises(RuntimeError, match="no memory request outstanding"):
        core.memory_response(tag_a)


# Lock operations ----------------------------------------------------------------------------------

def test_lock_round_trip_blocked_thread_takes_no_slot_and_resumes():
    port = FakeLockPort()
    core = SMTCore(contexts=2, issue_width=1, lock_port=port)
    seen = stamps(core)
    answers = []

    def locker():
        answers.append((yield Acquire(0x40)))
        yield Compute(1)
        answers.append((yield Release(0x40)))

    holder, spinner = Thread(5, 3, locker()), Thread(6, 3, spin())
    core.load_thread(0, holder)
    core.load_thread(1, spinner)
    core.run(3)                                            # cycle 0: ACQUIRE; 1, 2: waiting
    assert port.requests == [(LockOp.ACQUIRE, 3, 0x40, 5)]
    core.lock_response(5, LockStatus.BLOCKED)
    history = per_cycle_issue(core, [holder, spinner], 3)  # cycles 3..5: parked
    assert history == [[0, 1]] * 3 and core.idle is False
    core.lock_released(0, 5, 3, 0x40)
    core.run(2)                                            # cycle 6: Compute, 7: RELEASE
    assert answers == [LockStatus.GRANTED] and seen == [(5, 6, "released")]
    assert port.requests[1] == (LockOp.RELEASE, 3, 0x40, 5)
    core.lock_response(5, LockStatus.NOT_OWNER)
    core.step()
    assert answers == [LockStatus.GRANTED, LockStatus.NOT_OWNER] and holder.exited
    assert (holder.stalled_cycles, holder.blocked_cycles) == (2, 3)


def test_a_release_overtaking_its_blocked_answer_is_kept():
    port = FakeLockPort()
    core = SMTCore(contexts=1, lock_port=port)
    thread = Thread(1, 0, (x for x in [Wait(0x80)]))
    core.load_thread(0, thread)
    core.step()
    core.lock_released(0, 1, 0, 0x80)
    core.lock_response(1, LockStatus.BLOCKED)
    core.step()
    assert thread.exited


def test_mutual_exclusion_through_the_lock_table_model():
    port = LockTablePort(contexts=3)
    core = SMTCore(contexts=3, issue_width=2, lock_port=port)
    port.core = core
    core.on_residency(port.residency)
    inside, log = [], []

    def critical(tid):
        for _ in range(3):
            assert (yield Acquire(0x100)) is LockStatus.GRANTED
            inside.append(tid)
            assert len(inside) == 1
            log.append(tid)
            yield Compute(4)
            inside.remove(tid)
            assert (yield Release(0x100)) is LockStatus.GRANTED

    threads = [Thread(tid, 1, critical(tid)) for tid in (1, 2, 3)]
    for context, thread in enumerate(threads):
        core.load_thread(context, thread)
    core.run_until(lambda: all(t.exited for t in threads), 500)
    assert sorted(log) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert sum(t.blocked_cycles for t in threads) > 0
    assert port.table.free_entries == 32


def test_mmio_round_trip():
    class Mmio:
        def __init__(self):
            self.requests = []

        def request(self, write, asid, addr, value, thread):
            self.requests.append((write, asid, addr, value, thread))

    def body():
        status = yield MmioWrite(0x1000, 77)
        value = yield MmioRead(0x1008)
        return status, value

    mmio = Mmio()
    core = SMTCore(contexts=1, mmio=mmio)
    thread = Thread(4, 2, body())
    core.load_thread(0, thread)
    core.run(2)
    core.mmio_response(4, 0)
    core.run(3)
    core.mmio_response(4, 1234)
    core.step()
    assert thread.result == (0, 1234)
    assert mmio.requests == [(True, 2, 0x1000, 77, 4), (False, 2, 0x1008, 0, 4)]


# Notifications ------------------------------------------------------------------------------------

def test_branch_into_a_compute_thread_leaves_its_result_unchanged():
    uninterrupted = SMTCore(contexts=1, memory=filled_memory())
    alone = Thread(1, 0, crunch(0x100))
    uninterrupted.load_thread(0, alone)
    uninterrupted.run_until(lambda: alone.exited, 200)

    entries = []

    def handler(entry):
        entries.append(entry)
        yield Compute(4)
        yield Store(0x3000, entry)

    notifier = FakeNotifierPort()
    memory = filled_memory()
    core = SMTCore(contexts=1, memory=memory, notifier_port=notifier, handlers={0x400: handler})
    seen = stamps(core)
    thread = Thread(1, 0, crunch(0x100))
    core.load_thread(0, thread)
    core.run(7)
    core.notify(branch(entry=0x9000))
    core.run_until(lambda: thread.exited, 200)
    assert thread.result == alone.result == memory.read_word(0x2000)
    assert entries == [0x9000] and memory.read_word(0x3000) == 0x9000
    # Cycle 7: redirect; 8, 9: Compute(4); 10: store; 11, 12: its stall; 13: back.
    assert seen == [(1, 8, "branch")]
    assert thread.notification_cycles == 6 and thread.handler_instructions == 5
    assert thread.instructions == alone.instructions
    assert notifier.returns == [(RETURN, 3, 0), (EXIT, 0, 0)]


def test_a_pending_load_and_a_release_during_a_handler_are_kept():
    port, notifier = FakeLockPort(), FakeNotifierPort()
    memory = SparseMemory()
    memory.write_word(0x100, 42)

    def body():
        value = yield Load(0x100)
        status = yield Wait(0x80)
        yield Compute(1)                         # stamps "released"
        return value, status

    def handler(entry):
        yield Compute(10)

    core = SMTCore(contexts=1, memory=memory, lock_port=port, notifier_port=notifier,
                   handlers={0x400: handler})
    seen = stamps(core)
    thread = Thread(1, 0, body())
    core.load_thread(0, thread)
    core.step()                                  # cycle 0: the load
    core.notify(branch())                        # its value arrives during the handler
    core.run(6)                                  # 1: redirect; 2..6: Compute(10)
    assert port.requests == []
    core.step()                                  # 7: the thread resumes with WAIT
    assert port.requests == [(LockOp.WAIT, 0, 0x80, 1)]
    core.lock_response(1, LockStatus.BLOCKED)
    core.step()
    core.notify(branch())                        # a handler while the thread is parked
    core.step()
    core.lock_released(0, 1, 0, 0x80)            # released during the handler: remembered
    core.run_until(lambda: thread.exited, 100)
    assert thread.result == (42, LockStatus.GRANTED)
    assert [reason for _, _, reason in seen] == ["branch", "branch", "released"]
    assert notifier.returns == [(RETURN, 3, 0), (RETURN, 3, 0), (EXIT, 0, 0)]


def test_spawn_on_a_free_context_then_exit():
    notifier, os = FakeNotifierPort(), FakeOS(asid=9)
    ran = []

    def handler(entry):
        ran.append(entry)
        yield Compute(3)
        return "done"

    core = SMTCore(contexts=2, notifier_port=notifier, os=os, handlers={0x500: handler},
                   redirect_cycles=2)
    residency = []
    core.on_residency(lambda *report: residency.append(report))
    seen = stamps(core)
    core.notify(spawn(context=1, thread=7))
    spawned = core.resident(1)
    assert spawned.tid == 7 and spawned.asid == 9 and not spawned.evictable
    core.run_until(lambda: spawned.exited, 50)
    assert ran == [0x9100] and spawned.result == "done"
    assert seen == [(7, 2, "spawn")] and spawned.notification_cycles == 2
    assert notifier.returns == [(EXIT, 0, 1)] and os.exited == [spawned]
    assert residency == [(1, True, 7, False), (1, False, 0, False)]
    assert core.free_contexts() == [0, 1] and core.counters["spawn"] == 1


def test_spawn_evicts_a_thread_with_its_state_for_the_os():
    os = FakeOS()
    memory = filled_memory()

    def handler(entry):
        yield Compute(2)

    core = SMTCore(contexts=1, memory=memory, os=os, handlers={0x500: handler})
    victim = Thread(3, 0, crunch(0x100), evictable=True)
    core.load_thread(0, victim)
    core.run(9)
    core.notify(spawn(context=0, thread=7, evict=1, evicted=3))
    assert os.evicted_threads == [victim] and victim.context is None
    assert core.resident(0).tid == 7 and core.counters["evict"] == 1
    core.run_until(lambda: core.free_contexts() == [0], 50)
    core.load_thread(0, victim)                  # the OS puts it back later
    core.run_until(lambda: victim.exited, 200)
    assert victim.result == expected_crunch()


def test_exit_from_a_handler_ends_the_handler_then_the_thread():
    notifier, os = FakeNotifierPort(), FakeOS()

    def handler(entry):
        yield Compute(1)
        yield Exit()

    core = SMTCore(contexts=2, notifier_port=notifier, os=os, handlers={0x400: handler})
    thread = Thread(1, 0, spin())
    core.load_thread(1, thread)
    core.notify(branch(context=1))
    core.run(5)
    assert thread.exited and os.exited == [thread] and core.free_contexts() == [0, 1]
    assert notifier.returns == [(RETURN, 3, 1), (EXIT, 0, 1)]


def test_a_release_wakes_the_frame_parked_on_that_lock():
    """A handler parked on lock 0xB0 runs over its thread parked on lock 0xA0: the release of
    0xA0 wakes the thread's frame (later, when the handler has returned), not the handler."""
    port, notifier = FakeLockPort(), FakeNotifierPort()
    answers = []

    def body():
        answers.append(("thread", (yield Wait(0xA0))))

    def handler(entry):
        answers.append(("handler", (yield Acquire(0xB0))))

    core = SMTCore(contexts=1, lock_port=port, notifier_port=notifier, handlers={0x400: handler})
    thread = Thread(1, 2, body())
    core.load_thread(0, thread)
    core.step()
    core.lock_response(1, LockStatus.BLOCKED)               # the thread parks on 0xA0
    core.notify(branch())
    core.run(3)                                             # redirect, then ACQUIRE 0xB0
    core.lock_response(1, LockStatus.BLOCKED)               # the handler parks on 0xB0
    core.lock_released(0, 1, 2, 0xA0)
    core.run(3)
    assert answers == []                                    # the handler still waits for 0xB0
    core.lock_released(0, 1, 2, 0xB0)
    core.run_until(lambda: thread.exited, 20)
    assert answers == [("handler", LockStatus.GRANTED), ("thread", LockStatus.GRANTED)]


def test_exit_from_a_handler_over_a_parked_thread_is_refused():
    port, notifier = FakeLockPort(), FakeNotifierPort()

    def body():
        yield Wait(0xA0)

    def handler(entry):
        yield Exit()

    core = SMTCore(contexts=1, lock_port=port, notifier_port=notifier, handlers={0x400: handler})
    core.load_thread(0, Thread(1, 2, body()))
    core.step()
    core.lock_response(1, LockStatus.BLOCKED)
    core.notify(branch())
    with pytest.raises(ValueError, match="t1 exited while waiting on lock 2:0xa0; let the handler"):
        core.run(3)


def test_a_spawn_evicting_a_thread_not_marked_evictable_goes_to_the_os():
    notifier, os = FakeNotifierPort(), FakeOS()
    core = SMTCore(contexts=1, notifier_port=notifier, os=os, handlers={0x500: spin})
    core.load_thread(0, Thread(1, 0, spin()))
    reports = []
    core.on_residency(lambda *report: reports.append(report))
    core.notify(spawn(evict=1, evicted=1))                 # the Notifier's table was stale
    assert [e["reason"] for e in os.notify_events] == [NotifyOsReason.NO_CONTEXT]
    assert core.resident(0).tid == 1 and reports == [(0, True, 1, False)]
    assert core.counters["spawn_refused"] == 1 and core.counters["evict"] == 0


def test_events_for_a_thread_that_left_go_to_the_os():
    notifier, os = FakeNotifierPort(), FakeOS()
    core = SMTCore(contexts=2, notifier_port=notifier, os=os, handlers={0x400: spin, 0x500: spin})
    core.load_thread(0, Thread(1, 0, spin()))
    core.notify(branch(context=1, thread=1, entry=0x10))   # context 1 is empty
    core.notify(spawn(context=0, thread=7, entry=0x20))     # context 0 is busy, no evict
    core.lock_released(1, 1, 0, 0x80)
    assert [e["reason"] for e in os.notify_events] == [NotifyOsReason.NOT_RESIDENT,
                                                       NotifyOsReason.NO_CONTEXT]
    assert [e["entry"] for e in os.notify_events] == [0x10, 0x20]
    assert notifier.returns == [(RETURN, 3, 1)]            # the endpoint leaves its handler
    assert os.lock_events == [{"reason": LockOsReason.NOT_RESIDENT, "thread": 1, "asid": 0,
                               "addr": 0x80}]
    assert core.counters["branch_refused"] == core.counters["spawn_refused"] == 1


# Idle, skipping, timers ---------------------------------------------------------------------------

def test_idle_cores_skip_cycles_and_count_them():
    port = FakeLockPort()
    core = SMTCore(contexts=2, lock_port=port)
    thread = Thread(1, 0, (x for x in [Wait(0x80)]))
    core.load_thread(0, thread)
    core.step()
    assert core.idle                                       # waiting for the answer
    fired = []
    core.after(1_000_000, fired.append)
    core.run(2_000_000)                                    # fast: skipped, stopping for the timer
    assert fired == [1_000_001] and core.cycle == 2_000_001
    assert thread.stalled_cycles == 2_000_000
    core.lock_response(1, LockStatus.BLOCKED)
    core.skip(10)
    assert thread.blocked_cycles == 10


def test_run_until_reports_deadlock_and_timeout():
    port = FakeLockPort()
    core = SMTCore(contexts=1, lock_port=port)
    core.load_thread(0, Thread(1, 0, (x for x in [Acquire(0x80)])))
    with pytest.raises(RuntimeError, match="idle with no timer pending"):
        core.run_until(lambda: False, 100)
    busy = SMTCore(contexts=1)
    busy.load_thread(0, Thread(1, 0, spin()))
    with pytest.raises(TimeoutError, match="after 10 cycles"):
        busy.run_until(lambda: False, 10)
    with pytest.raises(RuntimeError, match="not idle"):
        busy.skip(1)


def test_load_delay_is_charged_to_its_overhead():
    core = SMTCore(contexts=1)
    thread = Thread(1, 0, (x for x in [Compute(2)]))
    core.load_thread(0, thread, delay_cycles=5)
    core.run_until(lambda: thread.exited, 20)
    assert (thread.os_cycles, thread.issued_cycles) == (5, 1)


# Parameters ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, error", [
    (lambda: Compute(-1), "Compute instructions -1 must be an integer >= 0"),
    (lambda: Load(1 << 48), "Load address 281474976710656 must be an integer 0 .. "),
    (lambda: Store(0, 1 << 64), "Store value 18446744073709551616 must be"),
    (lambda: MmioWrite(0, -5), "MmioWrite value -5 must be"),
    (lambda: Acquire("x"), "Acquire address 'x' must be"),
    (lambda: Thread(256, 0, spin()), "thread id 256 must be an integer 0 .. 255"),
    (lambda: Thread(1, -1, spin()), "asid -1 must be an integer 0 .. 255"),
    (lambda: Thread(1, 0, spin), "must be a generator, not <function spin"),
    (lambda: Thread(1, 0, spin(), evictable=1), "evictable 1 must be True or False"),
    (lambda: SMTCore(contexts=0), "contexts 0 must be an integer 1 .. 8"),
    (lambda: SMTCore(contexts=9), "contexts 9 must be an integer 1 .. 8"),
    (lambda: SMTCore(issue_width=0), "issue_width 0 must be an integer >= 1"),
    (lambda: SMTCore(policy="fifo"), "policy 'fifo' must be one of icount, round_robin"),
    (lambda: SMTCore(load_cycles=-1), "load_cycles -1 must be an integer >= 0"),
    (lambda: SMTCore(redirect_cycles=1.5), "redirect_cycles 1.5 must be an integer >= 0"),
    (lambda: SMTCore(icount_window_cycles=0), "icount_window_cycles 0 must be an integer >= 1"),
    (lambda: SMTCore(memory=42),
     "memory 42 must be a SparseMemory, or have load() and store(), or request()"),
    (lambda: SMTCore(memory=FlatMemory(SparseMemory(), 1), load_cycles=3),
     "load_cycles 3 applies to a SparseMemory only"),
    (lambda: SMTCore(handlers=[1]), "handlers [1] must be a mapping"),
    (lambda: SMTCore(lock_port=object()), "has no request() method"),
    (lambda: SMTCore(notifier_port=FakeLockPort()), "has no handler_return() method"),
    (lambda: FlatMemory({}, 1), "memory {} must be a SparseMemory"),
])
def test_bad_parameters_are_one_line_value_errors(make, error):
    with pytest.raises(ValueError, match=re.escape(error)) as info:
        make()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("call, error", [
    (lambda core: core.load_thread(4, Thread(1, 0, spin())), "context 4 must be an integer 0 .. 3"),
    (lambda core: core.load_thread(0, Thread(2, 0, spin())), "context 0 holds <Thread t1"),
    (lambda core: core.load_thread(1, core.resident(0)), "must be a live Thread in no context"),
    (lambda core: core.load_thread(1, Thread(2, 0, spin()), delay_cycles=-1),
     "delay_cycles -1 must be"),
    (lambda core: core.load_thread(1, Thread(2, 0, spin()), overhead="tea"),
     "overhead 'tea' must be one of os, notification"),
    (lambda core: core.notify(branch(pc=0x999)), "no handler at pc 0x999"),
    (lambda core: core.notify(branch(context=5)), "context 5 must be"),
    (lambda core: core.after(-2, print), "delay_cycles -2 must be"),
    (lambda core: core.run(-1), "cycles -1 must be"),
    (lambda core: core.mmio_response(1, 1 << 64), "MMIO value 18446744073709551616 must be"),
])
def test_bad_calls_are_one_line_value_errors(call, error):
    core = SMTCore(contexts=4)
    core.load_thread(0, Thread(1, 0, spin()))
    with pytest.raises(ValueError, match=re.escape(error)) as info:
        call(core)
    assert "\n" not in str(info.value)


def test_protocol_errors_name_the_thread():
    core = SMTCore(contexts=1)
    core.load_thread(0, Thread(1, 0, (x for x in [Acquire(0x40)]), name="worker"))
    with pytest.raises(RuntimeError, match="worker issued Acquire.* no lock_port"):
        core.step()
    with pytest.raises(RuntimeError, match="lock answer for thread 3, which has no lock request"):
        core.lock_response(3, LockStatus.GRANTED)
    bad = SMTCore(contexts=1)
    bad.load_thread(0, Thread(1, 0, (x for x in [5])))
    with pytest.raises(ValueError, match="t1 yielded 5; yield Compute"):
        bad.step()
