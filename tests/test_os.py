"""The behavioural OS: scheduling, residency, lock releases and deferred notifications.

Most tests wire the core and the OS to the lock-table and Notifier reference models with no
latency (:class:`Node`), so every path of a notification is the one the hardware would take.
"""

import re

import pytest

from behavioral.core import Compute, Exit, Load, SMTCore, Store, Wait
from behavioral.kernel import KernelPath
from behavioral.locktable import LockTableModel
from behavioral.memory import MemoryHierarchy
from behavioral.notifier import NotifierModel
from behavioral.os import OS
from rtl.layouts import (LockOsReason, LockStatus, NotifierCommandOp, NotifyMode,
                         NotifyOsReason)

NOT_RESIDENT, QUEUE_OVERFLOW = NotifyOsReason.NOT_RESIDENT, NotifyOsReason.QUEUE_OVERFLOW
NO_CONTEXT, BAD_ENDPOINT = NotifyOsReason.NO_CONTEXT, NotifyOsReason.BAD_ENDPOINT
INTERRUPT = NotifyOsReason.INTERRUPT
COSTS = {"switch_cycles": 5, "deliver_cycles": 7, "spawn_cycles": 9, "tick_cycles": 100}


class Node:
    """A core, its OS and the lock table and Notifier reference models, wired with no latency."""

    def __init__(self, contexts=2, queue_depth=4, handlers=None, **costs):
        self.locks = LockTableModel(contexts=contexts)
        self.notifier = NotifierModel(contexts=contexts, queue_depth=queue_depth)
        self.core = SMTCore(contexts=contexts, lock_port=self, notifier_port=self,
                            handlers=handlers or {})
        self.os = OS(self.core, **{**COSTS, **costs})
        self.os.on_residency(self.residency)
        self.os.on_endpoint(self.write_endpoint)
        self.resumes = []
        self.core.on_resume(lambda t, cycle, reason: self.resumes.append((t.tid, cycle, reason)))

    # The core's and the OS's ports.
    def request(self, op, asid, addr, thread):
        result = self.locks.request(op, asid, addr, thread)
        self.core.lock_response(thread, result.status)
        self._lock_outputs(result)

    def handler_return(self, op, endpoint, context):
        self._notifier_outputs(self.notifier.handler_return(op, endpoint, context))

    def residency(self, context, resident, thread, evictable):
        self.locks.residency(context, resident, thread)
        self.notifier.command(NotifierCommandOp.WRITE_CONTEXT, context, context={
            "busy": int(resident), "evictable": int(evictable), "thread": thread})

    def write_endpoint(self, index, entry):
        self.notifier.command(NotifierCommandOp.WRITE_ENDPOINT, index, endpoint=entry)

    # The NI's side.
    def completion(self, endpoint, entry):
        self._notifier_outputs(self.notifier.completion(endpoint, entry))

    def _notifier_outputs(self, result):
        if result.event is not None:
            self.core.notify(result.event)
        if result.signal is not None:
            self._lock_outputs(self.locks.signal(**result.signal))
        if result.os_event is not None:
            self.os.notify_event(result.os_event)

    def _lock_outputs(self, result):
        if result.released is not None:
            self.core.lock_released(**result.released)
        if result.os_event is not None:
            self.os.lock_event(result.os_event)


def spin():
    while True:
        yield Compute(1000)


def work(instructions, result=None):
    yield Compute(instructions)
    return result


def recording(log, instructions=4):
    """Return a handler factory that logs its entry and computes."""
    def handler(entry):
        log.append(entry)
        yield Compute(instructions)
    return handler


# Parameters ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error", [
    (dict(switch_cycles=-1), "switch_cycles -1 must be an integer >= 0"),
    (dict(deliver_cycles=2.5), "deliver_cycles 2.5 must be an integer >= 0"),
    (dict(spawn_cycles=None), "spawn_cycles None must be an integer >= 0"),
    (dict(tick_cycles=0), "tick_cycles 0 must be an integer >= 1"),
])
def test_bad_costs_are_one_line_value_errors(kwargs, error):
    with pytest.raises(ValueError, match=re.escape(error)) as info:
        OS(SMTCore(), **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("call, error", [
    (lambda os: OS(os.core), "already has an OS"),
    (lambda os: os.create_thread(1, 0, spin()), "thread id 1 is in use by <Thread t1"),
    (lambda os: os.create_thread(2, 300, spin()), "asid 300 must be an integer 0 .. 255"),
    (lambda os: os.set_endpoint(16, NotifyMode.LOCK), "endpoint 16 must be an integer 0 .. 15"),
    (lambda os: os.set_endpoint(1, 7), "mode 7 must be a NotifyMode"),
    (lambda os: os.notify_event({"reason": NOT_RESIDENT, "endpoint": 5, "thread": 1,
                                 "entry": 0}), "no handler at pc 0x0; the handlers are at"),
])
def test_bad_calls_are_one_line_value_errors(call, error):
    os = OS(SMTCore(contexts=1), **COSTS)
    os.create_thread(1, 0, spin())
    with pytest.raises(ValueError, match=re.escape(error)) as info:
        call(os)
    assert "\n" not in str(info.value)


# Scheduling ---------------------------------------------------------------------------------------

def test_threads_run_on_free_contexts_after_the_switch_cost():
    node = Node(contexts=2)
    residency = []
    node.os.on_residency(lambda *report: residency.append(report))
    first = node.os.create_thread(1, 0, work(8, "a"))
    second = node.os.create_thread(2, 0, work(8, "b"), evictable=True)
    third = node.os.create_thread(3, 0, work(8, "c"))
    assert (first.context, second.context, third.context) == (0, 1, None)
    assert node.os.waiting == [third]
    node.core.run_until(lambda: third.exited, 100)
    assert [t.result for t in (first, second, third)] == ["a", "b", "c"]
    assert first.os_cycles == 5 and third.os_cycles == 5 + 1     # loaded while a step ran
    assert residency == [(0, True, 1, False), (1, True, 2, True), (1, False, 0, False),
                         (1, True, 3, False), (0, False, 0, False), (1, False, 0, False)]
    assert node.os.counters["switches"] == 3 and node.os.counters["exits"] == 3
    assert node.core.free_contexts() == [0, 1] and node.notifier.context(0)["busy"] == 0


def test_ticks_time_slice_when_threads_wait_for_a_context():
    node = Node(contexts=1)
    threads = [node.os.create_thread(tid, 0, spin()) for tid in (1, 2, 3)]
    node.core.run(1000)
    assert all(t.instructions > 200 for t in threads)
    assert node.os.counters["preemptions"] == node.os.counters["ticks"] == 9


def test_a_parked_thread_is_preempted_first_and_released_through_the_os():
    node = Node(contexts=2)
    statuses = []

    def waiter():
        statuses.append((yield Wait(0x80)))
        yield Compute(1)

    parked = node.os.create_thread(1, 4, waiter())
    node.os.create_thread(2, 0, spin())
    late = node.os.create_thread(3, 0, work(10))
    node.core.run(110)                           # the tick unloads the parked thread, not 2
    assert parked.context is None and late.context == 0 and not parked.runnable
    node._lock_outputs(node.locks.signal(4, 0x80))
    assert node.os.lock_events[LockOsReason.NOT_RESIDENT] == 1 and parked.runnable
    node.core.run_until(lambda: parked.exited, 100)
    assert statuses == [LockStatus.GRANTED] and node.resumes == [(1, node.resumes[0][1], "os")]
    assert node.os.counters["preemptions"] == 1 and node.locks.free_waiters == 32


def test_lock_events_counted_and_unknown_releases_refused():
    node = Node()
    node.os.lock_event({"reason": LockOsReason.BAD_SIGNAL, "thread": 0, "asid": 1, "addr": 8})
    assert node.os.lock_events[LockOsReason.BAD_SIGNAL] == 1
    with pytest.raises(RuntimeError, match="thread 9, which is not waiting on a lock"):
        node.os.lock_event({"reason": LockOsReason.NOT_RESIDENT, "thread": 9, "asid": 1,
                            "addr": 8})


# Notification paths -------------------------------------------------------------------------------

def test_lock_mode_wakes_a_resident_waiter():
    node = Node()
    node.os.set_endpoint(2, NotifyMode.LOCK, asid=4, lock=0x80)
    statuses = []

    def waiter():
        statuses.append((yield Wait(0x80)))
        yield Compute(1)

    thread = node.os.create_thread(1, 4, waiter())
    node.core.run(10)
    assert thread.blocked_cycles > 0
    node.completion(2, 0x9000)
    node.core.run_until(lambda: thread.exited, 10)
    assert statuses == [LockStatus.GRANTED] and node.resumes == [(1, 10, "released")]


def test_not_resident_branch_is_delivered_once_when_the_thread_runs():
    handled = []
    node = Node(contexts=1, handlers={0x400: recording(handled)})
    node.os.set_endpoint(1, NotifyMode.BRANCH, asid=0, thread=2, handler_pc=0x400)
    node.os.create_thread(1, 0, work(20))                    # holds the only context
    target = node.os.create_thread(2, 0, work(6, "done"))
    node.completion(1, 0x9000)
    assert node.os.received[NOT_RESIDENT] == 1 and handled == []
    node.core.run_until(lambda: target.exited, 100)
    # The first thread issues its last instructions and ends in cycle 14, the target switches in
    # (5 + 1 cycles: it came while a step ran) and the handler starts 7 cycles later, before the
    # target's own stream.
    assert handled == [0x9000] and node.os.delivered[NOT_RESIDENT] == 1
    assert node.resumes == [(2, 27, "os")]
    assert target.result == "done" and target.notification_cycles == 7 + 2
    assert node.notifier.counters["os"] == 1


def test_an_interrupt_takes_the_kernel_path_on_the_node_caches_when_the_handler_comes_up():
    """INTERRUPT: the kernel's path runs through the hierarchy it is given when the handler
    comes up in the thread (not when the OS is told), and the handler starts after the cycles
    the path took: cold, every line of it misses the L2; then it is warm."""
    handled = []
    hierarchy = MemoryHierarchy()
    path = KernelPath.on_node(hierarchy)
    node = Node(contexts=1, handlers={0x400: recording(handled)}, kernel=path)
    node.os.set_endpoint(1, NotifyMode.INTERRUPT, thread=1, handler_pc=0x400)
    thread = node.os.create_thread(1, 0, work(30_000, "done"))
    node.core.run(10)
    node.completion(1, 0x100)
    node.completion(1, 0x200)
    assert node.os.received[INTERRUPT] == 2 and node.notifier.counters["interrupt"] == 2
    assert path.taken == [] and hierarchy.counters["l2_misses"] == 0
    node.core.run_until(lambda: thread.exited, 200_000)
    assert handled == [0x100, 0x200] and thread.result == "done"
    cold, warm = path.taken
    footprint = len(path.lines())
    assert (cold.l2_misses, warm.l2_misses) == (footprint, 0)
    assert hierarchy.counters["l2_misses"] == footprint
    assert all(line in hierarchy.l1 or line in hierarchy.l2 for line in path.lines())
    assert thread.notification_cycles >= cold.cycles + warm.cycles > 2 * 2000
    assert node.os.counters["interrupts"] == 2 and node.os.delivered[INTERRUPT] == 2
    assert node.os.counters["interrupt_cycles"] == cold.cycles + warm.cycles


def test_without_a_hierarchy_the_interrupt_path_runs_on_one_of_its_own():
    handled = []
    node = Node(contexts=1, handlers={0x400: recording(handled)})
    node.os.set_endpoint(0, NotifyMode.INTERRUPT, thread=1, handler_pc=0x400)
    thread = node.os.create_thread(1, 0, work(20, "done"))
    node.completion(0, 0x100)
    node.core.run_until(lambda: thread.exited, 100_000)
    assert handled == [0x100] and node.os.counters["interrupt_l2_misses"] == 380


def test_queue_overflow_is_delivered_after_the_queued_handlers():
    handled = []
    node = Node(contexts=1, queue_depth=1, handlers={0x400: recording(handled)})
    node.os.set_endpoint(1, NotifyMode.BRANCH, thread=1, handler_pc=0x400)
    thread = node.os.create_thread(1, 0, work(400, "done"))
    node.core.run(10)
    for entry in (0x100, 0x200, 0x300, 0x400):
        node.completion(1, entry)
    node.core.run_until(lambda: thread.exited, 500)
    assert handled == [0x100, 0x200, 0x300, 0x400] and thread.result == "done"
    counters = node.notifier.counters
    assert (counters["branch"], counters["queued"], counters["os"]) == (2, 1, 2)
    assert node.os.received[QUEUE_OVERFLOW] == node.os.delivered[QUEUE_OVERFLOW] == 2
    assert not node.notifier.in_handler(1)
    assert [reason for _, _, reason in node.resumes] == ["branch", "branch", "os", "os"]


def test_no_context_spawn_starts_when_a_context_frees():
    handled = []
    node = Node(contexts=1, handlers={0x500: recording(handled, 3)})
    node.os.set_endpoint(3, NotifyMode.SPAWN, asid=6, thread=9, handler_pc=0x500, stack=0x7000)
    busy = node.os.create_thread(1, 0, work(20))
    node.completion(3, 0x9100)
    assert node.os.received[NO_CONTEXT] == 1 and handled == []
    node.core.run_until(lambda: busy.exited, 100)
    spawned = node.core.resident(0)
    assert spawned.tid == 9 and spawned.asid == 6
    node.core.run_until(lambda: spawned.exited, 100)
    # The busy thread ends in cycle 14; the spawn costs 9 cycles (+1: started while a step ran).
    assert handled == [0x9100] and node.resumes == [(9, 24, "os")]
    assert node.os.delivered[NO_CONTEXT] == 1 and spawned.notification_cycles == 10


def test_spawn_free_and_evict_through_the_notifier():
    handled = []
    memory_results = []

    def crunch():
        total = 0
        for index in range(5):
            yield Compute(3)
            total += yield Load(8 * index)
        yield Store(0x100, total)
        memory_results.append(total)

    node = Node(contexts=2, handlers={0x500: recording(handled, 6)})
    node.os.set_endpoint(3, NotifyMode.SPAWN, asid=6, thread=9, handler_pc=0x500)
    for index in range(5):
        node.core.memory.memory.write_word(8 * index, index + 1)
    victim = node.os.create_thread(1, 0, crunch(), evictable=True)
    node.core.run(10)
    node.completion(3, 0xA000)                   # context 1 is free: SPAWN there
    node.completion(3, 0xB000)                   # none free: evict the victim
    assert node.notifier.counters["spawn"] == node.notifier.counters["evict"] == 1
    assert victim.context is None and node.os.counters["evicted"] == 1
    node.core.run_until(lambda: victim.exited, 200)
    assert sorted(handled) == [0xA000, 0xB000] and memory_results == [15]
    assert [reason for _, _, reason in node.resumes] == ["spawn", "spawn"]


def test_bad_endpoint_is_counted():
    node = Node()
    node.os.notify_event({"reason": BAD_ENDPOINT, "endpoint": 12, "thread": 0, "entry": 4})
    assert node.os.received[BAD_ENDPOINT] == 1 and node.os.delivered[BAD_ENDPOINT] == 0


def test_a_notification_for_a_thread_gone_is_dropped_and_counted():
    handled = []

    def quitter(entry):
        handled.append(entry)
        yield Exit()

    node = Node(contexts=1, handlers={0x400: quitter, 0x600: recording(handled)})
    node.os.set_endpoint(1, NotifyMode.BRANCH, thread=1, handler_pc=0x400)
    node.os.set_endpoint(2, NotifyMode.BRANCH, thread=1, handler_pc=0x600)
    thread = node.os.create_thread(1, 0, spin())
    node.core.run(10)
    node.completion(1, 0x100)                                  # its handler exits the thread
    node.os.notify_event({"reason": QUEUE_OVERFLOW, "endpoint": 2, "thread": 1, "entry": 0x200})
    node.core.run_until(lambda: thread.exited, 50)
    node.os.notify_event({"reason": NOT_RESIDENT, "endpoint": 2, "thread": 1, "entry": 0x300})
    assert handled == [0x100] and node.os.counters["dropped"] == 2
    assert node.os.delivered[QUEUE_OVERFLOW] == node.os.delivered[NOT_RESIDENT] == 0
