"""Behavioural operating system, first part: threads on SMT contexts and deferred notifications.

The OS keeps the threads that are in no context, puts them on free contexts, and takes what the
lock table and the Notifier cannot deliver in hardware (a thread not resident, a handler queue
overflowing, no context for a SPAWN) and delivers it later, each exactly once. It attaches itself
to a :class:`behavioral.core.SMTCore` as ``core.os``; the core calls :meth:`OS.evicted`,
:meth:`OS.thread_exited`, :meth:`OS.notify_event`, :meth:`OS.lock_event` and :meth:`OS.endpoint`.

Costs
    OS work is not simulated as instructions: each path delays the context it acts on by a cost
    in core cycles (defaults for the 2 GHz core of DESIGN.md, warm caches; the interrupt path's
    cache misses belong to the baseline kernel model, not here):

    * ``switch_cycles`` = 2,000 (1 us): a thread switched onto a context (scheduler, register
      state restore, return to user mode), charged to the thread's ``os_cycles``;
    * ``deliver_cycles`` = 3,000 (1.5 us): a deferred notification started as a user-level handler
      (signal-frame set-up and trampoline), charged to ``notification_cycles``;
    * ``spawn_cycles`` = 4,000 (2 us): a queued SPAWN started as a new thread (thread creation
      plus the switch), charged to the new thread's ``notification_cycles``;
    * ``tick_cycles`` = 2,000,000 (1 ms, a 1 kHz scheduler clock): while runnable work waits and
      every context is busy, each tick preempts one resident thread (a thread parked on a lock
      first, else the one resident longest) to make room.

    An arrival at an endpoint armed with INTERRUPT is the exception: it is simulated. When its
    handler comes up on the thread's context, the kernel's interrupt path
    (:class:`behavioral.kernel.KernelPath`, ``kernel``) runs its loads through the node's
    caches, and the handler starts after the cycles the path took (charged to
    ``notification_cycles``; the path's own signal-delivery step stands for ``deliver_cycles``).
    Its misses and the user lines it evicts are the cache model's.

Scheduling
    Free contexts go first to queued SPAWNs (a notification waits on them), then to the
    non-resident threads in the order they left their contexts, skipping those parked on a lock.
    A thread the OS loads reports as evictable if it was created evictable.

Deferred notifications
    A notification is "delivered" when its handler starts, counted in :attr:`OS.delivered` by
    :class:`rtl.layouts.NotifyOsReason`, against :attr:`OS.received`. The handler is
    ``core.handlers[pc](entry)``, ``pc`` the endpoint's ``handler_pc`` in the OS's endpoint
    table (:meth:`OS.set_endpoint`, the OS's copy of what it writes into the Notifier).

    * NOT_RESIDENT, QUEUE_OVERFLOW and INTERRUPT: the handler is put on the thread's frame stack
      just above its own stream (:meth:`behavioral.core.Thread.deliver`): it starts
      ``deliver_cycles`` (INTERRUPT: the interrupt path's cycles) after the handlers in progress
      have returned, and the thread's own stream resumes after it. A
      non-resident thread with a delivery pending is runnable even if parked on a lock (the
      handler runs; the thread stays parked below it), as a hardware BRANCH would.
    * Ordering. Deferred deliveries to one thread start in the order the OS received them, after
      any handler the thread was running or was saved in. A QUEUE_OVERFLOW arrival starts after
      the arrivals the Notifier had queued when it overflowed provided the Notifier answers each
      RETURN within ``deliver_cycles`` (the RTL takes <= 3 cycles): each queued arrival's BRANCH
      then comes while the OS handler still waits to start, and runs first. Not guaranteed: an
      arrival that reaches the Notifier after its queue drained branches at once and may start
      before an OS delivery still waiting for its ``deliver_cycles``.
    * NO_CONTEXT: queued; when a context frees, a new thread (the endpoint's ``thread`` id and
      ``asid``) runs the handler after ``spawn_cycles``.
    * BAD_ENDPOINT and lock BAD_SIGNAL: counted only. A notification for a thread that no longer
      exists, or whose handler never started because the thread exited, is counted in
      ``counters["dropped"]``.

Lock releases
    A NOT_RESIDENT lock event releases the thread's parked lock op (it completes with GRANTED
    when the thread next runs) and makes it runnable. A thread that is resident by then (the
    lock table's residency lagged) is released in place.
"""

from collections import Counter, deque

from rtl.layouts import ENDPOINT_BITS, LockOsReason, NotifyMode, NotifyOsReason

from .checks import check_range
from .core import Thread
from .kernel import KernelPath
from .memory import MemoryHierarchy

__all__ = ["OS"]

_ENDPOINT_FIELDS = ("asid", "thread", "lock", "handler_pc", "stack")


class OS:
    """Threads, residency and deferred notifications of one node; see the module docstring.

    Parameters
    ----------
    core : :class:`behavioral.core.SMTCore`
        The core it schedules; the OS attaches itself as ``core.os`` and shares
        ``core.handlers``.
    switch_cycles, deliver_cycles, spawn_cycles, tick_cycles : int
        Costs in core cycles (module docstring).
    kernel : :class:`behavioral.kernel.KernelPath` or None
        The interrupt path, on the node's hierarchy; None: on a hierarchy of its own (DESIGN
        defaults), made at the first interrupt, for a core with no caches modelled.

    Attributes
    ----------
    waiting : list of :class:`behavioral.core.Thread`
        Live threads in no context, in the order they left (or were created).
    received, delivered : :class:`collections.Counter`
        Notifications received from the Notifier and handlers started, by
        :class:`rtl.layouts.NotifyOsReason`.
    lock_events : :class:`collections.Counter`
        Lock-table events by :class:`rtl.layouts.LockOsReason`.
    counters : dict
        ``created``, ``switches`` (threads loaded), ``spawns`` (queued SPAWNs started),
        ``evicted``, ``exits``, ``ticks``, ``preemptions``, ``dropped``, ``interrupts`` (the
        interrupt path taken), ``interrupt_cycles`` and ``interrupt_l2_misses`` (its totals).
    """

    def __init__(self, core, *, switch_cycles=2000, deliver_cycles=3000, spawn_cycles=4000,
                 tick_cycles=2_000_000, kernel=None):
        for name, value, low in (("switch_cycles", switch_cycles, 0),
                                 ("deliver_cycles", deliver_cycles, 0),
                                 ("spawn_cycles", spawn_cycles, 0),
                                 ("tick_cycles", tick_cycles, 1)):
            check_range(name, value, low, None)
        if getattr(core, "os", None) is not None:
            raise ValueError(f"core {core!r} already has an OS, {core.os!r}")
        self.core = core
        core.os = self
        self.switch_cycles = switch_cycles
        self.deliver_cycles = deliver_cycles
        self.spawn_cycles = spawn_cycles
        self.tick_cycles = tick_cycles
        self.kernel = kernel
        self.waiting = []
        self.received = Counter()
        self.delivered = Counter()
        self.lock_events = Counter()
        self.counters = dict.fromkeys(["created", "switches", "spawns", "evicted", "exits",
                                       "ticks", "preemptions", "dropped", "interrupts",
                                       "interrupt_cycles", "interrupt_l2_misses"], 0)
        self._endpoints = {}
        self._endpoint_callbacks = []
        self._spawns = deque()            # (endpoint, thread id, entry) waiting for a context
        self._tick_armed = False

    @property
    def handlers(self):
        """The handler table, PC -> generator function of the entry (the core's)."""
        return self.core.handlers

    # Endpoints ----------------------------------------------------------------------------------

    def set_endpoint(self, index, mode, *, asid=0, thread=0, lock=0, handler_pc=0, stack=0):
        """Arm endpoint ``index`` (fields of :data:`rtl.layouts.NotifierEndpoint`); return the
        entry as a dict and pass it to every :meth:`on_endpoint` callback, which writes it into
        the Notifier (WRITE_ENDPOINT)."""
        check_range("endpoint", index, 0, (1 << ENDPOINT_BITS) - 1)
        try:
            mode = NotifyMode(mode)
        except ValueError:
            raise ValueError(f"mode {mode!r} must be a NotifyMode") from None
        entry = {"mode": mode, "asid": asid, "thread": thread, "lock": lock,
                 "handler_pc": handler_pc, "stack": stack}
        self._endpoints[index] = entry
        for callback in self._endpoint_callbacks:
            callback(index, dict(entry))
        return dict(entry)

    def endpoint(self, index):
        """Return endpoint ``index``'s entry; one never set reads as the Notifier's reset entry
        (mode NONE, every field zero)."""
        entry = self._endpoints.get(index)
        if entry is None:
            return {"mode": NotifyMode.NONE, **dict.fromkeys(_ENDPOINT_FIELDS, 0)}
        return dict(entry)

    def on_endpoint(self, callback):
        """Call ``callback(index, entry)`` whenever :meth:`set_endpoint` arms an endpoint."""
        self._endpoint_callbacks.append(callback)

    def on_residency(self, callback):
        """Call ``callback(context, resident, thread_id, evictable)`` whenever a context's thread
        changes, whoever changed it (the OS, a SPAWN, an exit); forward it to the LockTable's
        ``residency`` port and the Notifier's WRITE_CONTEXT command."""
        self.core.on_residency(callback)

    # Threads ------------------------------------------------------------------------------------

    def create_thread(self, tid, asid, body, evictable=False, *, name=None):
        """Create a thread running the generator ``body``; it runs when a context is free.

        Raises
        ------
        ValueError
            If a live thread known to the OS already has the id ``tid``.
        """
        if self._live(tid) is not None:
            raise ValueError(f"thread id {tid!r} is in use by {self._live(tid)!r}")
        thread = Thread(tid, asid, body, name=name, evictable=evictable)
        self.counters["created"] += 1
        self.waiting.append(thread)
        self._dispatch()
        return thread

    def evicted(self, thread):
        """Take back ``thread``, evicted by a SPAWN with all its state; it runs again later."""
        self.counters["evicted"] += 1
        self.waiting.append(thread)
        self._dispatch()

    def thread_exited(self, thread):
        """``thread`` ended and its context is free."""
        self.counters["exits"] += 1
        self.counters["dropped"] += sum(1 for frame in thread.frames
                                        if frame.kind == "os" and not frame.started)
        self._dispatch()

    def _resident_threads(self):
        return [t for t in map(self.core.resident, range(self.core.contexts)) if t is not None]

    def _live(self, tid, want=lambda thread: True):
        """Return a live thread ``tid`` that satisfies ``want``: a non-resident one first."""
        for thread in self.waiting + self._resident_threads():
            if thread.tid == tid and want(thread):
                return thread
        return None

    # Lock table ---------------------------------------------------------------------------------

    def lock_event(self, event):
        """Take a lock-table event (a dict of :data:`rtl.layouts.LockOsEvent` fields).

        Raises
        ------
        RuntimeError
            If a NOT_RESIDENT release names no live thread waiting on a lock.
        """
        reason = LockOsReason(event["reason"])
        self.lock_events[reason] += 1
        if reason is LockOsReason.BAD_SIGNAL:
            return
        thread = self._live(event["thread"], lambda t: t.waiting_on_lock)
        if thread is None:
            raise RuntimeError(f"lock release of thread {event['thread']}, which is not waiting "
                               f"on a lock (lock {event['asid']}:{event['addr']:#x})")
        thread.release_lock("released" if thread.context is not None else "os", event["asid"],
                            event["addr"])
        self._dispatch()

    # Notifier -----------------------------------------------------------------------------------

    def notify_event(self, event):
        """Take an arrival the Notifier hands over (a dict of :data:`rtl.layouts.NotifyOsEvent`
        fields) and deliver it later, as the module docstring says."""
        reason = NotifyOsReason(event["reason"])
        self.received[reason] += 1
        if reason is NotifyOsReason.BAD_ENDPOINT:
            return
        if reason is NotifyOsReason.NO_CONTEXT:
            self._spawns.append((event["endpoint"], event["thread"], event["entry"]))
        else:
            self._defer(reason, event)
        self._dispatch()

    def _defer(self, reason, event):
        thread = self._live(event["thread"])
        if thread is None:
            self.counters["dropped"] += 1
            return
        delay = self._interrupt if reason is NotifyOsReason.INTERRUPT else self.deliver_cycles
        thread.deliver(self._handler(event["endpoint"], event["entry"]),
                       endpoint=event["endpoint"], delay_cycles=delay,
                       on_start=self._counting(reason))

    def _interrupt(self):
        """Take the kernel's interrupt path now; return the cycles it took."""
        if self.kernel is None:
            self.kernel = KernelPath.on_node(MemoryHierarchy())
        done = self.kernel.run()
        self.counters["interrupts"] += 1
        self.counters["interrupt_cycles"] += done.cycles
        self.counters["interrupt_l2_misses"] += done.l2_misses
        return done.cycles

    def _handler(self, endpoint, entry):
        return self.core.handler(self.endpoint(endpoint)["handler_pc"], entry)

    def _counting(self, reason):
        def started():
            self.delivered[reason] += 1
        return started

    # Scheduling ---------------------------------------------------------------------------------

    def _dispatch(self):
        """Fill free contexts: queued SPAWNs first, then runnable waiting threads."""
        for context in self.core.free_contexts():
            if self._spawns:
                self._start_spawn(context, *self._spawns.popleft())
                continue
            thread = next((t for t in self.waiting if t.runnable), None)
            if thread is None:
                break
            self.waiting.remove(thread)
            self.counters["switches"] += 1
            self.core.load_thread(context, thread, delay_cycles=self.switch_cycles)
        if self._work_waiting() and not self._tick_armed:
            self._tick_armed = True
            self.core.after(self.tick_cycles, self._tick)

    def _start_spawn(self, context, endpoint, tid, entry):
        thread = Thread(tid, self.endpoint(endpoint)["asid"], self._handler(endpoint, entry),
                        name=f"os-spawn{endpoint}.t{tid}")
        base = thread.frames[0]
        base.wake_reason = "os"
        base.on_start = self._counting(NotifyOsReason.NO_CONTEXT)
        self.counters["spawns"] += 1
        self.core.load_thread(context, thread, delay_cycles=self.spawn_cycles,
                              overhead="notification")

    def _work_waiting(self):
        return bool(self._spawns) or any(thread.runnable for thread in self.waiting)

    def _tick(self, cycle):
        self._tick_armed = False
        self.counters["ticks"] += 1
        if self._work_waiting() and not self.core.free_contexts():
            self._preempt()
        self._dispatch()

    def _preempt(self):
        """Unload a thread parked on a lock, else the one resident longest."""
        resident = self._resident_threads()
        parked = [thread for thread in resident if not thread.runnable]
        victim = parked[0] if parked else min(resident, key=lambda t: t.loaded_cycle)
        self.core.unload(victim.context)
        self.counters["preemptions"] += 1
        self.waiting.append(victim)
