"""Behavioural SMT core: hardware contexts issuing threads written as Python generators.

A thread is a generator that yields operations (:class:`Compute`, :class:`Load`, :class:`Acquire`,
...) and receives their results. The core issues them cycle by cycle on ``contexts`` hardware
contexts, at most ``issue_width`` instructions per cycle, and talks to the lock table, the
Notifier, the NI's MMIO page and the OS through small port objects, so the same core runs
against in-test fakes, the reference models of :mod:`behavioral`, or the RTL through cocotb glue.

Timing
    :meth:`SMTCore.step` simulates cycle :attr:`SMTCore.cycle`. Events handed to the core between
    two steps (:meth:`~SMTCore.lock_response`, :meth:`~SMTCore.lock_released`,
    :meth:`~SMTCore.mmio_response`, :meth:`~SMTCore.notify`) take effect in the next step; an
    answer given while a step runs (a fake port answering at once) takes effect in the step after.
    Every operation but :class:`Compute` is one instruction and ends its thread's issue for the
    cycle, because its result cannot be used in the cycle it issues. A load or store issued in
    cycle ``t`` with latency ``L`` lets the thread issue again in cycle ``t + L + 1``. Lock and
    MMIO answers come from outside: the thread waits for them, however long they take. Reaching
    the end of a generator (or :class:`Exit`) takes no issue slot.

Issue policy
    Each cycle the ready contexts are put in an order and served one instruction each, in that
    order, round after round, until ``issue_width`` slots are used or none can issue more: a lone
    ready thread takes every slot, two ready threads of a 2-wide core take one each.
    ``round_robin`` orders the contexts upwards (wrapping) from the one after the last context
    served in the previous cycle (from the next one if none was), so the start rotates every cycle
    and empty contexts give no thread an extra turn. ``icount`` orders them by the instructions
    each context issued in its last ``icount_window_cycles`` cycles, fewest first, ties in the
    round-robin order; the window stands for the instructions a real ICOUNT fetch policy counts
    in flight between fetch and issue, so a thread back from a stall gets priority. A context
    that holds no thread, is parked on a lock, or waits on memory, MMIO or a lock answer takes
    no slot.

Accounting
    Every cycle a thread spends in a context adds one to exactly one of its counters:
    ``issued_cycles`` (its own stream issued), ``ready_cycles`` (it could issue but got no slot),
    ``stalled_cycles`` (waiting on memory, MMIO or a lock answer), ``blocked_cycles`` (parked on
    a lock), ``notification_cycles`` (a handler runs in its place, in any state, or the redirect
    or OS delivery delay before one, or the start delay of a spawned thread) and ``os_cycles``
    (the OS switching it in). ``instructions`` counts its own stream, ``handler_instructions``
    those of handlers run in its place.

Notification
    A BRANCH event pushes the handler ``handlers[pc](entry)`` on the thread's frame stack; it
    starts ``redirect_cycles`` later and runs in place of the thread, whose own state (remaining
    compute, a pending load, a lock answer or a parked lock op) waits below it; a release or an
    answer that comes meanwhile is kept. When the handler's generator returns, the core tells the
    Notifier ``handler_return(HandlerReturnOp.RETURN, endpoint, context)``. A SPAWN event starts
    the handler as a new thread after ``redirect_cycles``, first handing an evicted thread to the
    OS. When a thread ends, its context is free and the core tells the Notifier
    ``handler_return(HandlerReturnOp.EXIT, 0, context)`` and the OS ``thread_exited(thread)``.

Races between tables
    The Notifier's and lock table's views of the contexts lag the core's by a few cycles, so an
    event may name a thread that has just left its context. Nothing is lost: a BRANCH for a thread
    not in the context goes to the OS as NOT_RESIDENT (and the core answers the Notifier with a
    RETURN so the endpoint is not stuck in its handler); a SPAWN into a busy context, unless it
    evicts the thread it names and the thread is evictable, goes to the OS as NO_CONTEXT (and the
    core reports the context's thread again, so that the Notifier's table is put right); a
    release for a thread not in the context goes to the OS as a NOT_RESIDENT lock event. Each is counted in :attr:`SMTCore.counters`.

Ports (duck-typed; every call is made during :meth:`SMTCore.step` or an event method)
    ``lock_port.request(op, asid, addr, thread)``: a :class:`rtl.layouts.LockOp` for thread id
    ``thread``; answered by :meth:`SMTCore.lock_response`, once per request, in order per thread.
    ``notifier_port.handler_return(op, endpoint, context)``: a :class:`rtl.layouts.HandlerReturnOp`.
    ``mmio.request(write, asid, addr, value, thread)``: answered by :meth:`SMTCore.mmio_response`
    with the value read (a write's answer is its status), once per request, in order per thread.
    ``memory.load(addr) -> (value, cycles)`` and ``memory.store(addr, value) -> cycles``, or
    ``memory.request(write, addr, value, tag)`` answered by :meth:`SMTCore.memory_response`:
    see :class:`FlatMemory`. The OS: ``evicted(thread)``, ``thread_exited(thread)``,
    ``notify_event(event)``, ``lock_event(event)`` and ``endpoint(index)`` (for a spawned thread's
    ASID), as :class:`behavioral.os.OS` provides them.

Addresses
    The core has no MMU: :class:`Load` and :class:`Store` name the node's physical addresses
    (aligned 64-bit words); lock operations name (ASID, virtual address) as the lock table does.
"""

import heapq
import inspect
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import count

from rtl.layouts import (ASID_BITS, MAX_CONTEXTS, THREAD_BITS, VA_BITS, HandlerReturnOp, LockOp,
                         LockOsReason, LockStatus, NotifyEventKind, NotifyOsReason)

from .checks import check_range
from .memory import SparseMemory

__all__ = [
    "Operation", "Compute", "Load", "Store", "MmioRead", "MmioWrite", "Acquire", "Release", "Wait",
    "Exit", "Thread", "FlatMemory", "SMTCore", "POLICIES", "RESUME_REASONS",
]

#: Issue policies of :class:`SMTCore`.
POLICIES = ("icount", "round_robin")
#: Reasons :meth:`SMTCore.on_resume` callbacks receive.
RESUME_REASONS = ("released", "branch", "spawn", "os")
#: Overheads a context's start delay is charged to (:meth:`SMTCore.load_thread`).
_OVERHEADS = {"os": "os_cycles", "notification": "notification_cycles"}
_WORD_LIMIT = 1 << 64


def _check_addr(name, addr):
    check_range(f"{name} address", addr, 0, (1 << VA_BITS) - 1)


# Operations ---------------------------------------------------------------------------------------

class Operation:
    """Base of everything a thread may yield."""


@dataclass(frozen=True)
class Compute(Operation):
    """``instructions`` ALU instructions, one issue slot each; the thread receives None."""
    instructions: int

    def __post_init__(self):
        check_range("Compute instructions", self.instructions, 0, None)


@dataclass(frozen=True)
class Load(Operation):
    """Load the 64-bit word at ``addr``; the thread receives its value."""
    addr: int

    def __post_init__(self):
        _check_addr("Load", self.addr)


@dataclass(frozen=True)
class Store(Operation):
    """Store the 64-bit ``value`` at ``addr``; the thread receives None."""
    addr: int
    value: int

    def __post_init__(self):
        _check_addr("Store", self.addr)
        check_range("Store value", self.value, 0, _WORD_LIMIT - 1)


@dataclass(frozen=True)
class MmioRead(Operation):
    """Read the NI register at ``addr``; the thread receives the value the MMIO port answers."""
    addr: int

    def __post_init__(self):
        _check_addr("MmioRead", self.addr)


@dataclass(frozen=True)
class MmioWrite(Operation):
    """Write ``value`` to the NI register at ``addr``; the thread receives the port's status."""
    addr: int
    value: int

    def __post_init__(self):
        _check_addr("MmioWrite", self.addr)
        check_range("MmioWrite value", self.value, 0, _WORD_LIMIT - 1)


@dataclass(frozen=True)
class Acquire(Operation):
    """Take the mutex at ``addr`` of the thread's ASID; the thread receives a LockStatus."""
    addr: int

    def __post_init__(self):
        _check_addr("Acquire", self.addr)


@dataclass(frozen=True)
class Release(Operation):
    """Give up the mutex at ``addr`` of the thread's ASID; the thread receives a LockStatus."""
    addr: int

    def __post_init__(self):
        _check_addr("Release", self.addr)


@dataclass(frozen=True)
class Wait(Operation):
    """Consume a signal of the notification lock at ``addr``; the thread receives a LockStatus."""
    addr: int

    def __post_init__(self):
        _check_addr("Wait", self.addr)


@dataclass(frozen=True)
class Exit(Operation):
    """End the thread, from its own stream or from a handler run in its place; not while a
    frame below the handler waits on a lock (the lock table would hand it to a thread that is
    gone)."""


_LOCK_OPS = {Acquire: LockOp.ACQUIRE, Release: LockOp.RELEASE, Wait: LockOp.WAIT}


# Threads ------------------------------------------------------------------------------------------

class _Frame:
    """One activation on a thread's stack: its own stream (``kind`` "thread") or a handler run in
    its place, started by a Notifier BRANCH ("branch") or delivered by the OS ("os").

    A frame's ``start_delay`` begins when it first reaches the top of a resident thread's stack.
    """

    __slots__ = ("body", "kind", "endpoint", "start_delay", "activated", "started", "ready_at",
                 "op", "remaining", "send", "awaiting", "lock", "parked", "early_releases",
                 "wake_reason",
                 "on_start")

    def __init__(self, body, kind, *, endpoint=0, start_delay=0, wake_reason=None, on_start=None):
        if not inspect.isgenerator(body):
            raise ValueError(f"a thread or handler body must be a generator, not {body!r}; "
                             f"call the generator function")
        self.body = body
        self.kind = kind
        self.endpoint = endpoint
        self.start_delay = start_delay
        self.activated = False
        self.started = False
        self.ready_at = 0                # first cycle it may issue again (memory latency, delays)
        self.op = None                   # the operation being issued
        self.remaining = 0               # instructions of ``op`` still to issue
        self.send = None                 # what the generator receives next
        self.awaiting = None             # "lock" or "mmio" while an answer is outstanding
        self.parked = False
        self.lock = None                 # (asid, addr) of the outstanding lock operation
        self.early_releases = 0          # releases seen before the BLOCKED answer
        self.wake_reason = wake_reason   # stamped at the frame's next instruction
        self.on_start = on_start

    def activate(self, cycle):
        self.activated = True
        delay = self.start_delay() if callable(self.start_delay) else self.start_delay
        self.ready_at = max(self.ready_at, cycle + delay)

    def next_op(self):
        """Return (operation, done, return value) from the generator."""
        self.started = True
        send, self.send = self.send, None
        try:
            return self.body.send(send), False, None
        except StopIteration as stop:
            return None, True, stop.value


class Thread:
    """A software thread: a generator, its identity, its saved state and its counters.

    The thread's state lives here, not in the context, so :meth:`SMTCore.unload` and an eviction
    save it whole (handlers in progress, a pending load, an outstanding lock op) and
    :meth:`SMTCore.load_thread` resumes it in any context.

    Parameters
    ----------
    tid : int
        OS-wide thread number, as the lock table and Notifier name threads (8 bits).
    asid : int
        Address space of its lock operations and MMIO accesses.
    body : generator
        The thread's stream of :class:`Operation`; its return value becomes :attr:`result`.
    name : str or None
        For messages; ``"t<tid>"`` by default.
    evictable : bool
        The OS allows a SPAWN to evict this thread.
    """

    _COUNTERS = ("issued_cycles", "ready_cycles", "stalled_cycles", "blocked_cycles",
                 "notification_cycles", "os_cycles")

    def __init__(self, tid, asid, body, name=None, evictable=False):
        check_range("thread id", tid, 0, (1 << THREAD_BITS) - 1)
        check_range("asid", asid, 0, (1 << ASID_BITS) - 1)
        if not isinstance(evictable, bool):
            raise ValueError(f"evictable {evictable!r} must be True or False")
        self.tid = tid
        self.asid = asid
        self.name = f"t{tid}" if name is None else name
        self.evictable = evictable
        self.frames = [_Frame(body, "thread")]
        self.context = None
        self.loaded_cycle = None
        self.exited = False
        self.result = None
        self.instructions = 0
        self.handler_instructions = 0
        for counter in self._COUNTERS:
            setattr(self, counter, 0)

    def __repr__(self):
        where = "exited" if self.exited else f"context {self.context}"
        return f"<Thread {self.name} tid={self.tid} asid={self.asid} {where}>"

    @property
    def resident_cycles(self):
        """Cycles spent in a context: the sum of the cycle counters."""
        return sum(getattr(self, counter) for counter in self._COUNTERS)

    @property
    def runnable(self):
        """Whether the thread could make progress in a context (it is not parked on a lock)."""
        return not self.exited and not self.frames[-1].parked

    @property
    def waiting_on_lock(self):
        """Whether a lock release could concern the thread (parked, or a lock answer pending)."""
        return any(f.parked or f.awaiting == "lock" for f in self.frames)

    def deliver(self, handler, *, endpoint=0, delay_cycles=0, on_start=None):
        """Run the generator ``handler`` in place of the thread once the handlers now in progress
        have returned (it goes just above the thread's own stream), ``delay_cycles`` after it
        comes up; for the OS's deferred notifications. ``delay_cycles`` may be a function, called
        when the handler comes up for its delay (the OS's work done then, on that context).
        ``on_start()`` is called when it starts."""
        if not callable(delay_cycles):
            check_range("delay_cycles", delay_cycles, 0, None)
        frame = _Frame(handler, "os", endpoint=endpoint, start_delay=delay_cycles,
                       wake_reason="os", on_start=on_start)
        self.frames.insert(1, frame)

    def release_lock(self, reason, asid, addr):
        """Let the frame parked on lock (``asid``, ``addr``) go on (its lock op answers
        GRANTED), waking with ``reason`` for :meth:`SMTCore.on_resume`; a release that overtook
        its BLOCKED answer is kept for that answer. Return whether a frame took the release."""
        for frame in self.frames:
            if frame.lock == (asid, addr) and frame.parked:
                frame.parked, frame.lock = False, None
                frame.send = LockStatus.GRANTED
                frame.wake_reason = reason
                return True
        for frame in self.frames:
            if frame.lock == (asid, addr) and frame.awaiting == "lock":
                frame.early_releases += 1
                return True
        return False


# Memory -------------------------------------------------------------------------------------------

class FlatMemory:
    """The core's memory protocol over a :class:`SparseMemory`, every access ``access_cycles``.

    A memory object for :class:`SMTCore` needs two methods: ``load(addr) -> (value, cycles)`` and
    ``store(addr, value) -> cycles``, ``cycles`` being the stall after the access's issue cycle.
    A memory whose answers come from outside (a cache miss probing a design in simulation) has
    instead ``request(write, addr, value, tag)``, and answers each access with
    :meth:`SMTCore.memory_response` once it is done, naming the access by its ``tag`` (answers
    may come in any order: a hit overtakes a miss).
    """

    def __init__(self, memory, access_cycles):
        if not isinstance(memory, SparseMemory):
            raise ValueError(f"memory {memory!r} must be a SparseMemory")
        check_range("access_cycles", access_cycles, 0, None)
        self.memory = memory
        self.access_cycles = access_cycles

    def load(self, addr):
        return self.memory.read_word(addr), self.access_cycles

    def store(self, addr, value):
        self.memory.write_word(addr, value)
        return self.access_cycles


# Core ---------------------------------------------------------------------------------------------

class _Context:
    """One hardware context: the thread it holds and its recent issue history (for ICOUNT)."""

    def __init__(self, window):
        self.thread = None
        self.ready_at = 0                # the thread's start delay ends here
        self.overhead = "os_cycles"      # the counter the start delay is charged to
        self.history = deque(maxlen=window)
        self.issuer = None               # the thread that issued this cycle (it may have left)
        self.own = 0                     # instructions it issued this cycle: its own stream's
        self.handler = 0                 # ... and its handlers'


class SMTCore:
    """An SMT core of ``contexts`` hardware contexts; see the module docstring for its rules.

    Parameters
    ----------
    contexts : int
        Hardware contexts (1 .. 8).
    issue_width : int
        Instructions issued per cycle, over all contexts.
    policy : str
        ``"icount"`` or ``"round_robin"``.
    memory : SparseMemory, memory object or None
        Where loads and stores go: a :class:`SparseMemory` (a new one if None) with a flat
        ``load_cycles`` latency, or an object with the :class:`FlatMemory` protocol, which brings
        its own latencies.
    load_cycles : int or None
        Flat load/store latency in cycles (2 when None) for a :class:`SparseMemory`; must be None
        with a memory object.
    redirect_cycles : int
        Cycles from a BRANCH or SPAWN event to the cycle the handler may first issue.
    lock_port, notifier_port, mmio, os : objects or None
        See "Ports" in the module docstring; an operation needing a missing port raises
        RuntimeError when it issues. An :class:`behavioral.os.OS` attaches itself as ``os``.
    handlers : mapping or None
        Handler PC -> function of the completion entry's address returning a generator.
    icount_window_cycles : int
        Cycles of issue history the ICOUNT policy weighs.

    Attributes
    ----------
    cycle : int
        The next cycle :meth:`step` simulates.
    counters : dict
        Notification events taken (``branch``, ``spawn``, ``evict``), refused and handed to the
        OS (``branch_refused``, ``spawn_refused``, ``release_forwarded``), ``exits``.
    """

    def __init__(self, *, contexts=4, issue_width=2, policy="icount", memory=None,
                 load_cycles=None, redirect_cycles=1, lock_port=None, notifier_port=None, os=None,
                 handlers=None, mmio=None, icount_window_cycles=8):
        check_range("contexts", contexts, 1, MAX_CONTEXTS)
        check_range("issue_width", issue_width, 1, None)
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r} must be one of {', '.join(POLICIES)}")
        check_range("redirect_cycles", redirect_cycles, 0, None)
        check_range("icount_window_cycles", icount_window_cycles, 1, None)
        if handlers is not None and not isinstance(handlers, Mapping):
            raise ValueError(f"handlers {handlers!r} must be a mapping of PC to generator function")
        for name, port, method in (("lock_port", lock_port, "request"),
                                   ("notifier_port", notifier_port, "handler_return"),
                                   ("mmio", mmio, "request")):
            if port is not None and not callable(getattr(port, method, None)):
                raise ValueError(f"{name} {port!r} has no {method}() method")
        self.contexts = contexts
        self.issue_width = issue_width
        self.policy = policy
        self.memory = self._memory(memory, load_cycles)
        self.redirect_cycles = redirect_cycles
        self.lock_port = lock_port
        self.notifier_port = notifier_port
        self.mmio = mmio
        self.os = os
        self.handlers = {} if handlers is None else handlers
        self.cycle = 0
        self.counters = dict.fromkeys(["branch", "spawn", "evict", "branch_refused",
                                       "spawn_refused", "release_forwarded", "exits"], 0)
        self._contexts = [_Context(icount_window_cycles) for _ in range(contexts)]
        self._awaiting = {"lock": {}, "mmio": {}, "memory": {}}    # kind -> thread id -> deque of frames
        self._timers = []                             # heap of (cycle, sequence, callback)
        self._sequence = count()
        self._resume_callbacks = []
        self._residency_callbacks = []
        self._in_step = False
        self._rr_start = 0                            # first context in round-robin order

    @staticmethod
    def _memory(memory, load_cycles):
        if memory is None or isinstance(memory, SparseMemory):
            cycles = 2 if load_cycles is None else load_cycles
            check_range("load_cycles", cycles, 0, None)
            return FlatMemory(SparseMemory() if memory is None else memory, cycles)
        if not (all(callable(getattr(memory, method, None)) for method in ("load", "store"))
                or callable(getattr(memory, "request", None))):
            raise ValueError(f"memory {memory!r} must be a SparseMemory, or have load() and "
                             f"store(), or request()")
        if load_cycles is not None:
            raise ValueError(f"load_cycles {load_cycles!r} applies to a SparseMemory only; "
                             f"memory {memory!r} brings its own latency")
        return memory

    # Callbacks and timers -----------------------------------------------------------------------

    def on_resume(self, callback):
        """Call ``callback(thread, cycle, reason)`` when a woken frame issues its first
        instruction; ``reason`` is one of :data:`RESUME_REASONS`: "released" (after a lock
        release), "branch" (first handler instruction), "spawn" (first instruction of a spawned
        thread), "os" (first instruction after the OS released the thread, delivered a
        notification or spawned a thread)."""
        self._resume_callbacks.append(callback)

    def on_residency(self, callback):
        """Call ``callback(context, resident, thread_id, evictable)`` whenever a context's thread
        changes (load, unload, spawn, eviction, exit); an empty context reports
        ``(context, False, 0, False)``."""
        self._residency_callbacks.append(callback)

    def after(self, delay_cycles, callback):
        """Call ``callback(cycle)`` at the start of the step of cycle ``cycle + delay_cycles``."""
        check_range("delay_cycles", delay_cycles, 0, None)
        heapq.heappush(self._timers, (self.cycle + delay_cycles, next(self._sequence), callback))

    @property
    def next_timer_cycle(self):
        """The cycle of the earliest pending :meth:`after` callback, or None."""
        return self._timers[0][0] if self._timers else None

    # Contexts -----------------------------------------------------------------------------------

    def _check_context(self, context):
        check_range("context", context, 0, self.contexts - 1)
        return self._contexts[context]

    def resident(self, context):
        """Return the :class:`Thread` in ``context``, or None."""
        return self._check_context(context).thread

    def free_contexts(self):
        """Return the contexts that hold no thread, lowest first."""
        return [index for index, ctx in enumerate(self._contexts) if ctx.thread is None]

    def load_thread(self, context, thread, *, delay_cycles=0, overhead="os"):
        """Put ``thread`` in the free ``context``; it may issue ``delay_cycles`` later, those
        cycles charged to ``overhead`` ("os": os_cycles, "notification": notification_cycles)."""
        ctx = self._check_context(context)
        if not isinstance(thread, Thread) or thread.exited or thread.context is not None:
            raise ValueError(f"thread {thread!r} must be a live Thread in no context")
        if ctx.thread is not None:
            raise ValueError(f"context {context} holds {ctx.thread!r}; unload it first")
        check_range("delay_cycles", delay_cycles, 0, None)
        if overhead not in _OVERHEADS:
            raise ValueError(f"overhead {overhead!r} must be one of {', '.join(_OVERHEADS)}")
        self._install(context, thread, delay_cycles, _OVERHEADS[overhead])
        self._report_residency(context)

    def unload(self, context):
        """Take the thread out of ``context`` with all its state; return it (None if empty)."""
        thread = self._take(self._check_context(context))
        self._report_residency(context)
        return thread

    def _install(self, context, thread, delay_cycles, overhead):
        ctx = self._contexts[context]
        # A thread put in a context during a step has lost that cycle to the change.
        ctx.ready_at = self.cycle + delay_cycles + int(self._in_step)
        ctx.overhead = overhead
        ctx.history.clear()
        ctx.thread = thread
        thread.context = context
        thread.loaded_cycle = self.cycle

    def _take(self, ctx):
        thread, ctx.thread = ctx.thread, None
        ctx.history.clear()
        if thread is not None:
            thread.context = None
        return thread

    def _report_residency(self, context):
        thread = self._contexts[context].thread
        report = (context, False, 0, False) if thread is None else \
            (context, True, thread.tid, thread.evictable)
        for callback in self._residency_callbacks:
            callback(*report)

    # Running ------------------------------------------------------------------------------------

    def step(self):
        """Simulate one cycle: timers, then issue, then accounting."""
        self._in_step = True
        try:
            self._fire_timers()
            for ctx in self._contexts:
                ctx.issuer, ctx.own, ctx.handler = None, 0, 0
            ready = [index for index in range(self.contexts) if self._ready(index)]
            self._issue(ready)
            self._account()
        finally:
            self._in_step = False
        self.cycle += 1

    @property
    def idle(self):
        """Whether no context can issue and none waits on a timed stall: until an external event
        (or the next timer, :attr:`next_timer_cycle`) the core only counts cycles."""
        for ctx in self._contexts:
            if ctx.thread is None:
                continue
            frame = ctx.thread.frames[-1]
            if self.cycle < ctx.ready_at or not frame.activated or not (frame.parked or
                                                                        frame.awaiting):
                return False
        return True

    def quiet_cycles(self):
        """Return how many cycles from :attr:`cycle` on are sure, if nothing from outside
        reaches the core, to issue nothing but instructions of the ``Compute`` operations under
        way, to take no new operation and to fire no timer: a driver may step them later, all at
        once, without changing anything. None: no bound (every thread waits on an event and no
        timer is pending)."""
        timer = self.next_timer_cycle
        bound = None if timer is None else timer - self.cycle
        for ctx in self._contexts:
            if ctx.thread is None:
                continue
            frame = ctx.thread.frames[-1]
            if self.cycle < ctx.ready_at:
                horizon = ctx.ready_at - self.cycle
            elif not frame.activated:
                return 0
            elif frame.parked or frame.awaiting:
                continue
            elif frame.ready_at > self.cycle:
                horizon = frame.ready_at - self.cycle
            elif isinstance(frame.op, Compute):
                # A context may take every issue slot; the operation's last instruction may be
                # followed in the same cycle by the next operation.
                horizon = (frame.remaining - 1) // self.issue_width
            else:
                return 0
            bound = horizon if bound is None else min(bound, horizon)
        return bound

    def skip(self, cycles):
        """Advance ``cycles`` idle cycles at once, counting them as :meth:`step` would.

        Raises
        ------
        RuntimeError
            If the core is not :attr:`idle`.
        ValueError
            If a timer falls due within the cycles skipped.
        """
        check_range("cycles", cycles, 0, None)
        if not self.idle:
            raise RuntimeError(f"cycle {self.cycle}: the core is not idle; step() it instead")
        timer = self.next_timer_cycle
        if timer is not None and timer < self.cycle + cycles:
            raise ValueError(f"cycles {cycles} would skip the timer due at cycle {timer}; "
                             f"skip at most {timer - self.cycle}")
        for ctx in self._contexts:
            ctx.issuer, ctx.own, ctx.handler = None, 0, 0
            ctx.history.extend([0] * min(cycles, ctx.history.maxlen))
            if ctx.thread is not None:
                counter = self._classify(ctx, ctx.thread)
                setattr(ctx.thread, counter, getattr(ctx.thread, counter) + cycles)
        self._rr_start = (self._rr_start + cycles) % self.contexts
        self.cycle += cycles

    def run(self, cycles):
        """Simulate ``cycles`` cycles, skipping idle stretches up to the next timer."""
        check_range("cycles", cycles, 0, None)
        end = self.cycle + cycles
        while self.cycle < end:
            self._advance_to(end)

    def run_until(self, predicate, max_cycles):
        """Simulate until ``predicate()`` is true; return the cycle.

        Raises
        ------
        TimeoutError
            If ``predicate()`` is still false after ``max_cycles`` cycles.
        RuntimeError
            If the core is idle with no timer pending: nothing can change any more.
        """
        check_range("max_cycles", max_cycles, 0, None)
        end = self.cycle + max_cycles
        while not predicate():
            if self.cycle >= end:
                raise TimeoutError(f"condition still false after {max_cycles} cycles "
                                   f"(cycle {self.cycle})")
            if self.idle and self.next_timer_cycle is None:
                waiting = [ctx.thread for ctx in self._contexts if ctx.thread is not None]
                raise RuntimeError(f"cycle {self.cycle}: condition false and the core is idle "
                                   f"with no timer pending; threads waiting: {waiting}")
            self._advance_to(end)
        return self.cycle

    def _advance_to(self, end):
        """Skip an idle stretch (up to ``end`` or the next timer), else step once."""
        if self.idle:
            timer = self.next_timer_cycle
            stop = end if timer is None else min(end, timer)
            if stop > self.cycle:
                self.skip(stop - self.cycle)
                return
        self.step()

    def _fire_timers(self):
        while self._timers and self._timers[0][0] <= self.cycle:
            _, _, callback = heapq.heappop(self._timers)
            callback(self.cycle)

    # Issue --------------------------------------------------------------------------------------

    def _order(self):
        start = self._rr_start
        order = [(start + offset) % self.contexts for offset in range(self.contexts)]
        if self.policy == "icount":
            order.sort(key=lambda index: sum(self._contexts[index].history))   # stable: RR ties
        return order

    def _issue(self, ready):
        slots = self.issue_width
        active = [index for index in self._order() if index in ready]
        last = self._rr_start
        while slots and active:
            still = []
            for index in active[:slots]:
                slots -= 1
                last = index
                if self._issue_one(index) and self._ready(index):
                    still.append(index)
            active = still
        self._rr_start = (last + 1) % self.contexts
        for ctx in self._contexts:
            ctx.history.append(ctx.own + ctx.handler)

    def _ready(self, index):
        """Return whether context ``index`` can issue now, first pulling operations from its top
        frame and carrying out those that take no slot (a generator's end, Exit)."""
        ctx = self._contexts[index]
        while True:
            thread = ctx.thread
            if thread is None or self.cycle < ctx.ready_at:
                return False
            frame = thread.frames[-1]
            if not frame.activated:
                frame.activate(self.cycle)
            if frame.parked or frame.awaiting or frame.ready_at > self.cycle:
                return False
            if frame.op is not None:
                return True
            if not self._fetch(index, thread, frame):
                return False

    def _fetch(self, index, thread, frame):
        """Take the next operation of ``frame``; return False if the thread left the context."""
        if not frame.started and frame.on_start is not None:
            frame.on_start()
        op, done, value = frame.next_op()
        if done and frame.kind != "thread":
            self._return_from_handler(index, thread, frame)
            return True
        if done or isinstance(op, Exit):
            self._exit(index, thread, value)
            return False
        if not isinstance(op, Operation):
            raise ValueError(f"{thread.name} yielded {op!r}; yield Compute, Load, Store, MmioRead, "
                             f"MmioWrite, Acquire, Release, Wait or Exit")
        frame.op = op
        frame.remaining = op.instructions if isinstance(op, Compute) else 1
        if frame.remaining == 0:
            frame.op = None
        return True

    def _issue_one(self, index):
        """Issue one instruction of context ``index``; return whether it may issue more."""
        ctx = self._contexts[index]
        thread = ctx.thread
        frame = thread.frames[-1]
        self._stamp(thread, frame)
        ctx.issuer = thread
        if frame.kind == "thread":
            thread.instructions += 1
            ctx.own += 1
        else:
            thread.handler_instructions += 1
            ctx.handler += 1
        op = frame.op
        frame.remaining -= 1
        if isinstance(op, Compute):
            if frame.remaining == 0:
                frame.op = None
            return True
        frame.op = None
        self._perform(thread, frame, op)
        return False

    def _stamp(self, thread, frame):
        if frame.wake_reason is not None:
            reason, frame.wake_reason = frame.wake_reason, None
            for callback in self._resume_callbacks:
                callback(thread, self.cycle, reason)

    def _perform(self, thread, frame, op):
        if isinstance(op, (Load, Store)) and callable(getattr(self.memory, "request", None)):
            # Tagged per access, not per thread: threads of one id (SPAWNed handlers of an
            # endpoint) may have accesses outstanding at once, answered out of order.
            tag = next(self._sequence)
            frame.awaiting = "memory"
            self._awaiting["memory"][tag] = deque([frame])
            write = isinstance(op, Store)
            self.memory.request(write, op.addr, op.value if write else 0, tag)
        elif isinstance(op, Load):
            frame.send, latency = self.memory.load(op.addr)
            frame.ready_at = self.cycle + 1 + latency
        elif isinstance(op, Store):
            frame.ready_at = self.cycle + 1 + self.memory.store(op.addr, op.value)
        elif isinstance(op, (MmioRead, MmioWrite)):
            port = self._port("mmio", thread, op)
            self._await("mmio", thread, frame)
            write = isinstance(op, MmioWrite)
            port.request(write, thread.asid, op.addr, op.value if write else 0, thread.tid)
        else:
            port = self._port("lock_port", thread, op)
            self._await("lock", thread, frame)
            frame.lock = (thread.asid, op.addr)
            port.request(_LOCK_OPS[type(op)], thread.asid, op.addr, thread.tid)

    def _port(self, name, thread, op):
        port = getattr(self, name)
        if port is None:
            raise RuntimeError(f"{thread.name} issued {op!r} but the core has no {name}")
        return port

    def _await(self, kind, thread, frame):
        # Marked before the request so that a port answering at once finds the frame.
        frame.awaiting = kind
        self._awaiting[kind].setdefault(thread.tid, deque()).append(frame)

    def _account(self):
        for ctx in self._contexts:
            # A thread that issued and then ended in this cycle still counts the cycle.
            for thread in {ctx.issuer, ctx.thread} - {None}:
                counter = self._classify(ctx, thread)
                setattr(thread, counter, getattr(thread, counter) + 1)

    def _classify(self, ctx, thread):
        """Return the counter this cycle adds to for ``thread``, in ``ctx`` or just out of it."""
        if thread is ctx.issuer:
            return "notification_cycles" if ctx.handler else "issued_cycles"
        if self.cycle < ctx.ready_at:
            return ctx.overhead
        frame = thread.frames[-1]
        if frame.kind != "thread":
            return "notification_cycles"
        if frame.parked:
            return "blocked_cycles"
        if frame.awaiting or frame.ready_at > self.cycle:
            return "stalled_cycles"
        return "ready_cycles"

    # Ends of threads and handlers ---------------------------------------------------------------

    def _return_from_handler(self, index, thread, frame):
        thread.frames.pop()
        if frame.kind == "branch" and self.notifier_port is not None:
            self.notifier_port.handler_return(HandlerReturnOp.RETURN, frame.endpoint, index)

    def _exit(self, index, thread, result):
        waiting = [frame for frame in thread.frames if frame.lock is not None]
        if waiting:
            raise ValueError(f"{thread.name} exited while waiting on lock "
                             f"{waiting[0].lock[0]}:{waiting[0].lock[1]:#x}; let the handler "
                             f"return instead, so that the lock operation completes")
        thread.exited = True
        thread.result = result
        self.counters["exits"] += 1
        self._take(self._contexts[index])
        self._report_residency(index)
        if self.notifier_port is not None:
            # BRANCH handlers cut short by the exit still end, or their endpoints stay in_handler.
            for frame in reversed(thread.frames):
                if frame.kind == "branch":
                    self.notifier_port.handler_return(HandlerReturnOp.RETURN, frame.endpoint,
                                                      index)
            self.notifier_port.handler_return(HandlerReturnOp.EXIT, 0, index)
        if self.os is not None:
            self.os.thread_exited(thread)

    # Lock table and MMIO answers ----------------------------------------------------------------

    def _answered(self, kind, thread_id):
        frames = self._awaiting[kind].get(thread_id)
        if not frames:
            raise RuntimeError(f"{kind} answer for thread {thread_id}, which has no {kind} "
                               f"request outstanding")
        frame = frames.popleft()
        frame.awaiting = None
        return frame

    def lock_response(self, thread_id, status):
        """Take the lock table's answer to thread ``thread_id``'s oldest outstanding request.

        BLOCKED parks the frame until :meth:`lock_released`; any other status is sent into it.
        """
        status = LockStatus(status)
        frame = self._answered("lock", thread_id)
        if status is not LockStatus.BLOCKED:
            frame.send, frame.lock = status, None
        elif frame.early_releases:
            frame.early_releases -= 1
            frame.send, frame.lock = LockStatus.GRANTED, None
            frame.wake_reason = "released"
        else:
            frame.parked = True

    def lock_released(self, context, thread, asid, addr):
        """The lock table released parked thread id ``thread`` in ``context`` from lock
        (``asid``, ``addr``) (the fields of :data:`rtl.layouts.LockReleased`): that lock op
        completes with GRANTED. A thread no longer in the context gets it through the OS."""
        resident = self._check_context(context).thread
        if (resident is not None and resident.tid == thread
                and resident.release_lock("released", asid, addr)):
            return
        self.counters["release_forwarded"] += 1
        self._require_os(f"release of thread {thread} in context {context}").lock_event(
            {"reason": LockOsReason.NOT_RESIDENT, "thread": thread, "asid": asid, "addr": addr})

    def mmio_response(self, thread_id, value=0):
        """Take the MMIO port's answer (the value read, or a write's status) to thread
        ``thread_id``'s oldest outstanding MMIO access."""
        check_range("MMIO value", value, 0, _WORD_LIMIT - 1)
        self._answered("mmio", thread_id).send = value

    def memory_response(self, tag, value=0):
        """Take an outside memory's answer (the value loaded; None for a store) to the access
        ``tag``; its thread issues again in the next cycle."""
        self._answered("memory", tag).send = value
        del self._awaiting["memory"][tag]

    def _require_os(self, what):
        if self.os is None:
            raise RuntimeError(f"{what} needs the OS, and the core has none")
        return self.os

    # Notifications ------------------------------------------------------------------------------

    def notify(self, event):
        """Take a Notifier event: a dict of the fields of :data:`rtl.layouts.NotifyEvent`."""
        kind = NotifyEventKind(event["kind"])
        self._check_context(event["context"])
        if kind is NotifyEventKind.BRANCH:
            self._branch(event)
        else:
            self._spawn(event)

    def handler(self, pc, entry):
        """Return the generator of the handler at ``pc`` for completion entry ``entry``.

        Raises
        ------
        ValueError
            If no handler is at ``pc``.
        """
        try:
            factory = self.handlers[pc]
        except KeyError:
            raise ValueError(f"no handler at pc {pc:#x}; the handlers are at "
                             f"{', '.join(hex(p) for p in self.handlers) or 'no pc'}") from None
        return factory(entry)

    def _branch(self, event):
        context, endpoint = event["context"], event["endpoint"]
        thread = self._contexts[context].thread
        if thread is None or thread.tid != event["thread"]:
            self.counters["branch_refused"] += 1
            self._require_os(f"BRANCH to thread {event['thread']} not in context {context}") \
                .notify_event({"reason": NotifyOsReason.NOT_RESIDENT, "endpoint": endpoint,
                               "thread": event["thread"], "entry": event["entry"]})
            if self.notifier_port is not None:
                self.notifier_port.handler_return(HandlerReturnOp.RETURN, endpoint, context)
            return
        self.counters["branch"] += 1
        thread.frames.append(_Frame(self.handler(event["pc"], event["entry"]), "branch",
                                    endpoint=endpoint, start_delay=self.redirect_cycles,
                                    wake_reason="branch"))

    def _spawn(self, event):
        context, endpoint = event["context"], event["endpoint"]
        old = self._contexts[context].thread
        if old is not None and not (event["evict"] and old.tid == event["evicted"]
                                    and old.evictable):
            # The Notifier's table is stale: the context holds a thread it may not evict.
            self.counters["spawn_refused"] += 1
            self._require_os(f"SPAWN into busy context {context}").notify_event(
                {"reason": NotifyOsReason.NO_CONTEXT, "endpoint": endpoint,
                 "thread": event["thread"], "entry": event["entry"]})
            self._report_residency(context)     # and the tables learn what the context holds
            return
        if old is not None:
            self._require_os(f"SPAWN evicting {old!r}")
        asid = 0 if self.os is None else self.os.endpoint(endpoint)["asid"]
        thread = Thread(event["thread"], asid, self.handler(event["pc"], event["entry"]),
                        name=f"spawn{endpoint}.t{event['thread']}")
        thread.frames[0].wake_reason = "spawn"
        self.counters["evict" if old is not None else "spawn"] += 1
        self._take(self._contexts[context])
        self._install(context, thread, self.redirect_cycles, "notification_cycles")
        self._report_residency(context)
        if old is not None:
            # After the spawn is installed, so that the OS does not refill the context.
            self.os.evicted(old)
