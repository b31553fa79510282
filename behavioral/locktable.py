"""Functional reference model of the lock table (:class:`rtl.locktable.LockTable`).

A lock is named by (ASID, virtual address). Its first operation decides its kind: ACQUIRE makes a
mutex, WAIT or SIGNAL a notification lock (an event with a count of remembered signals). Threads
that cannot go on are parked in the lock's FIFO, one waiter slot each from a shared pool; when one
leaves the FIFO head it is released to the core if a context holds it, else handed to the OS.

The model has no notion of cycles: a testbench applies each request, signal and residency update
in the order the hardware takes them and compares what the hardware answers with the
:class:`LockResult` returned. Events are dicts with every field of their layout, as
:meth:`rtl.layouts.Codec.unpack` returns them, so they compare equal to the hardware's payloads.

Where the specification is silent, the model decides:

* a residency update naming a context at or beyond ``contexts`` (the field allows
  :data:`rtl.layouts.MAX_CONTEXTS`) changes nothing, as an out-of-range Notifier command does;
* an EVENT entry never holds a count and parked threads at once (a SIGNAL releases a parked thread
  before it counts, a WAIT consumes a count before it parks), so "count reaches 0 and FIFO empty"
  reduces to "count reaches 0".
"""

from collections import deque
from dataclasses import dataclass, field

from rtl.layouts import (LOCK_SIGNAL_RESERVE, MAX_CONTEXTS, LockKind, LockOp, LockOsEvent,
                         LockOsReason, LockReleased, LockRequest, LockSignal, LockStatus, Residency,
                         codec)

from .checks import check_range, payload

__all__ = ["LockResult", "LockTableModel"]


@dataclass(frozen=True)
class LockResult:
    """What one operation produced.

    Attributes
    ----------
    status : :class:`rtl.layouts.LockStatus` or None
        The ``response`` to a request; None for a SIGNAL, which has no answer.
    released : dict or None
        The ``released`` event (fields of :data:`rtl.layouts.LockReleased`), if any.
    os_event : dict or None
        The ``os`` event (fields of :data:`rtl.layouts.LockOsEvent`), if any.
    """
    status: LockStatus | None = None
    released: dict | None = None
    os_event: dict | None = None


@dataclass
class _Lock:
    kind: LockKind
    owner: int = 0
    count: int = 0
    parked: deque = field(default_factory=deque)


class LockTableModel:
    """The lock table's entries, waiter pool and residency table.

    Parameters
    ----------
    entries : int
        Lock entries, mutexes and notification locks together.
    waiters : int
        Waiter slots, shared by the threads parked on every lock.
    contexts : int
        SMT contexts whose residency the table tracks (at most :data:`rtl.layouts.MAX_CONTEXTS`).
    count_bits : int
        Width of a notification lock's count; a SIGNAL at the maximum count is not accepted.
    """

    def __init__(self, entries=32, waiters=32, contexts=4, count_bits=8):
        # The RTL's ranges: with the reserve for SIGNAL, one entry would serve no core operation.
        check_range("entries", entries, LOCK_SIGNAL_RESERVE + 1, 256)
        check_range("waiters", waiters, 1, 256)
        check_range("contexts", contexts, 1, MAX_CONTEXTS)
        check_range("count_bits", count_bits, 1, 16)
        self._entries = entries
        self._waiters = waiters
        self._max_count = (1 << count_bits) - 1
        self._locks = {}                        # (asid, addr) -> _Lock
        self._residency = [None] * contexts     # thread held by each context, None if none

    # Read-only views ------------------------------------------------------------------------------

    @property
    def free_entries(self):
        """Lock entries not in use."""
        return self._entries - len(self._locks)

    @property
    def free_waiters(self):
        """Waiter slots no parked thread occupies."""
        return self._waiters - sum(len(lock.parked) for lock in self._locks.values())

    def kind(self, asid, addr):
        """Return the :class:`LockKind` of lock (asid, addr), or None if it has no entry."""
        lock = self._locks.get((asid, addr))
        return None if lock is None else lock.kind

    def owner(self, asid, addr):
        """Return the thread holding mutex (asid, addr), or None if it is no mutex."""
        lock = self._locks.get((asid, addr))
        return lock.owner if lock is not None and lock.kind is LockKind.MUTEX else None

    def count(self, asid, addr):
        """Return the signals remembered by lock (asid, addr); 0 if it is no notification lock."""
        lock = self._locks.get((asid, addr))
        return lock.count if lock is not None else 0

    def parked(self, asid, addr):
        """Return the threads parked on lock (asid, addr), the next one released first."""
        lock = self._locks.get((asid, addr))
        return list(lock.parked) if lock is not None else []

    def resident_context(self, thread):
        """Return the lowest context holding ``thread``, or None if it is not resident."""
        for context, held in enumerate(self._residency):
            if held == thread:
                return context
        return None

    # Transactions ---------------------------------------------------------------------------------

    def request(self, op, asid, addr, thread):
        """Apply a core-side operation (a :data:`rtl.layouts.LockRequest`); return its result.

        Raises
        ------
        :exc:`ValueError`
            If ``op`` is no :class:`rtl.layouts.LockOp` or a field does not fit its width.
        """
        op = LockOp(op)
        # Packing rejects what the hardware's port could not carry.
        codec(LockRequest).pack(op=op, asid=asid, addr=addr, thread=thread)
        handler = {LockOp.ACQUIRE: self._acquire, LockOp.RELEASE: self._release,
                   LockOp.WAIT: self._wait}[op]
        return handler((asid, addr), thread)

    def signal(self, asid, addr):
        """Apply the NI's SIGNAL of notification lock (asid, addr).

        Return the :class:`LockResult` (``status`` None), or None if the SIGNAL is not accepted:
        the lock's count is at its maximum, or it has no entry and none is free. Nothing changed
        then; the hardware holds the SIGNAL, and the testbench applies it again once accepted.
        """
        codec(LockSignal).pack(asid=asid, addr=addr)
        key = (asid, addr)
        lock = self._locks.get(key)
        if lock is None:
            return self._signal_new(key)
        if lock.kind is LockKind.MUTEX:
            return LockResult(os_event=self._os_event(LockOsReason.BAD_SIGNAL, 0, key))
        if lock.parked:
            return self._release_head(key, lock, None)
        if lock.count == self._max_count:
            return None
        lock.count += 1
        return LockResult()

    def residency(self, context, resident, thread):
        """Record that ``context`` holds ``thread`` (``resident`` true) or no thread.

        A context at or beyond ``contexts`` changes nothing.
        """
        codec(Residency).pack(context=context, resident=int(resident), thread=thread)
        if context < len(self._residency):
            self._residency[context] = thread if resident else None

    # Operations -----------------------------------------------------------------------------------

    def _acquire(self, key, thread):
        lock = self._locks.get(key)
        if lock is None:
            if self.free_entries <= LOCK_SIGNAL_RESERVE:
                return LockResult(LockStatus.FULL)
            self._locks[key] = _Lock(LockKind.MUTEX, owner=thread)
            return LockResult(LockStatus.GRANTED)
        if lock.kind is LockKind.EVENT:
            return LockResult(LockStatus.WRONG_KIND)
        # Parking the owner too: re-acquiring is a software bug that deadlocks only that thread.
        return self._park(lock, thread)

    def _release(self, key, thread):
        lock = self._locks.get(key)
        if lock is None:
            return LockResult(LockStatus.NOT_OWNER)
        if lock.kind is LockKind.EVENT:
            return LockResult(LockStatus.WRONG_KIND)
        if lock.owner != thread:
            return LockResult(LockStatus.NOT_OWNER)
        if not lock.parked:
            del self._locks[key]
            return LockResult(LockStatus.GRANTED)
        lock.owner = lock.parked[0]
        return self._release_head(key, lock, LockStatus.GRANTED)

    def _wait(self, key, thread):
        lock = self._locks.get(key)
        if lock is None:
            if self.free_entries <= LOCK_SIGNAL_RESERVE or not self.free_waiters:
                return LockResult(LockStatus.FULL)
            lock = self._locks[key] = _Lock(LockKind.EVENT)
            return self._park(lock, thread)
        if lock.kind is LockKind.MUTEX:
            return LockResult(LockStatus.WRONG_KIND)
        if not lock.count:
            return self._park(lock, thread)
        lock.count -= 1
        if not lock.count:
            del self._locks[key]
        return LockResult(LockStatus.GRANTED)

    def _signal_new(self, key):
        if not self.free_entries:
            return None
        self._locks[key] = _Lock(LockKind.EVENT, count=1)
        return LockResult()

    def _park(self, lock, thread):
        if not self.free_waiters:
            return LockResult(LockStatus.FULL)
        lock.parked.append(thread)
        return LockResult(LockStatus.BLOCKED)

    def _release_head(self, key, lock, status):
        """Pop the FIFO head, freeing its waiter slot, and release it to the core or the OS."""
        thread = lock.parked.popleft()
        if lock.kind is LockKind.EVENT and not lock.parked:
            del self._locks[key]
        context = self.resident_context(thread)
        if context is not None:
            asid, addr = key
            return LockResult(status, released=payload(codec(LockReleased), context=context,
                                                       thread=thread, asid=asid, addr=addr))
        return LockResult(status, os_event=self._os_event(LockOsReason.NOT_RESIDENT, thread, key))

    @staticmethod
    def _os_event(reason, thread, key):
        asid, addr = key
        return payload(codec(LockOsEvent), reason=reason, thread=thread, asid=asid, addr=addr)
