"""Functional reference model of the Notifier (:class:`rtl.notifier.Notifier`).

The Notifier turns a message's completion into what the endpoint's mode asks: nothing (the
receiver polls), a SIGNAL of a notification lock, a BRANCH of the endpoint's resident thread to
its handler, the SPAWN of a handler thread on a free or evictable SMT context, or an interrupt
to the OS (INTERRUPT, the baseline the others are measured against). While a BRANCH
handler runs, later arrivals wait in the endpoint's queue and are delivered one per handler
RETURN; what cannot be delivered goes to the OS.

The model has no notion of cycles: a testbench applies each completion, handler return and
command in the order the hardware takes them and compares its outputs with the
:class:`NotifierResult` returned. Outputs are dicts with every field of their layout, as
:meth:`rtl.layouts.Codec.unpack` returns them, so they compare equal to the hardware's payloads.

Where the specification is silent, the model decides:

* a RETURN names the context of the next BRANCH event as given, unchecked (it may be at or beyond
  ``contexts``, or hold another thread): the specification takes "the RETURN's" context;
* an EXIT frees its context only: an endpoint whose handler ran there stays in its handler, so
  its later arrivals go to the OS as NOT_RESIDENT until a RETURN ends the handler;
* a BRANCH arrival checks residency before ``in_handler``, in the specification's order: an
  arrival for a thread in no context goes to the OS even while the handler runs;
* a command's ``endpoint`` or ``context`` left out (None), and fields left out of its dict, are
  zero, as :meth:`rtl.layouts.Codec.pack` leaves the fields it is not given.
"""

from collections import deque
from dataclasses import dataclass

from rtl.layouts import (ENDPOINT_BITS, MAX_CONTEXTS, NOTIFIER_COUNTERS, Completion, HandlerReturn,
                         HandlerReturnOp, LockSignal, NotifierCommandOp, NotifierContext,
                         NotifierEndpoint, NotifyEvent, NotifyEventKind, NotifyMode, NotifyOsEvent,
                         NotifyOsReason, codec, notifier_command_layout)

from .checks import check_range, payload

__all__ = ["NotifierResult", "NotifierModel"]


@dataclass(frozen=True)
class NotifierResult:
    """What one input produced; at most one of the three.

    Attributes
    ----------
    event : dict or None
        The event to the core (fields of :data:`rtl.layouts.NotifyEvent`).
    signal : dict or None
        The SIGNAL to the lock table (fields of :data:`rtl.layouts.LockSignal`).
    os_event : dict or None
        The arrival handed to the OS (fields of :data:`rtl.layouts.NotifyOsEvent`).
    """
    event: dict | None = None
    signal: dict | None = None
    os_event: dict | None = None


class NotifierModel:
    """The Notifier's endpoint and context tables, handler queues and counters.

    Parameters
    ----------
    endpoints : int
        Endpoints with a table entry (at most ``2**ENDPOINT_BITS``); a completion naming another
        goes to the OS as BAD_ENDPOINT.
    contexts : int
        SMT contexts in the context table (at most :data:`rtl.layouts.MAX_CONTEXTS`).
    queue_depth : int
        Arrivals each endpoint holds while its BRANCH handler runs.
    """

    def __init__(self, endpoints=8, contexts=4, queue_depth=4):
        check_range("endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        check_range("contexts", contexts, 1, MAX_CONTEXTS)
        check_range("queue_depth", queue_depth, 1, 16)
        self._queue_depth = queue_depth
        self._command = codec(notifier_command_layout(endpoints, contexts))
        self._endpoints = [payload(codec(NotifierEndpoint)) for _ in range(endpoints)]
        self._contexts = [payload(codec(NotifierContext)) for _ in range(contexts)]
        self._in_handler = [False] * endpoints
        self._queues = [deque() for _ in range(endpoints)]
        self._counters = dict.fromkeys(NOTIFIER_COUNTERS, 0)

    # Read-only views ------------------------------------------------------------------------------

    @property
    def counters(self):
        """A copy of the counters, by the names in :data:`NOTIFIER_COUNTERS`."""
        return dict(self._counters)

    def endpoint(self, index):
        """Return endpoint ``index``'s table entry (fields of :data:`NotifierEndpoint`)."""
        return dict(self._endpoints[self._index("endpoint", index, self._endpoints)])

    def context(self, index):
        """Return context ``index``'s table entry (fields of :data:`NotifierContext`)."""
        return dict(self._contexts[self._index("context", index, self._contexts)])

    def in_handler(self, endpoint):
        """Return whether the BRANCH handler of ``endpoint`` runs."""
        return self._in_handler[self._index("endpoint", endpoint, self._endpoints)]

    def queued(self, endpoint):
        """Return the entries waiting for the handler of ``endpoint``, the next one first."""
        return list(self._queues[self._index("endpoint", endpoint, self._endpoints)])

    # Transactions ---------------------------------------------------------------------------------

    def completion(self, endpoint, entry):
        """Notify ``endpoint`` that the completion entry at VA ``entry`` was written.

        Raises
        ------
        :exc:`ValueError`
            If a field does not fit the :data:`rtl.layouts.Completion` port.
        """
        codec(Completion).pack(endpoint=endpoint, entry=entry)
        if endpoint >= len(self._endpoints):
            return self._to_os(NotifyOsReason.BAD_ENDPOINT, endpoint, 0, entry)
        deliver = {NotifyMode.NONE: self._poll, NotifyMode.LOCK: self._signal,
                   NotifyMode.BRANCH: self._branch, NotifyMode.SPAWN: self._spawn,
                   NotifyMode.INTERRUPT: self._interrupt}
        # (a mode no NotifyMode names reads as NONE, as in the RTL)
        return deliver.get(self._endpoints[endpoint]["mode"], self._poll)(endpoint, entry)

    def handler_return(self, op, endpoint, context):
        """Apply the core's RETURN of ``endpoint``'s handler in ``context``, or EXIT of the
        thread in ``context`` (``endpoint`` ignored); return the next queued BRANCH, if any.

        A RETURN of an endpoint not in its handler, or an EXIT of a context beyond the table,
        counts in ``bad_returns`` and changes nothing else.
        """
        op = HandlerReturnOp(op)
        codec(HandlerReturn).pack(op=op, endpoint=endpoint, context=context)
        if op is HandlerReturnOp.EXIT:
            return self._exit(context)
        return self._return(endpoint, context)

    def command(self, op, index, endpoint=None, context=None):
        """Write ``endpoint`` (WRITE_ENDPOINT) or ``context`` (WRITE_CONTEXT) into entry ``index``
        of its table; an index beyond the table changes nothing. A handler's state (in_handler,
        queue) is untouched.

        ``endpoint`` and ``context`` are dicts of :data:`NotifierEndpoint` and
        :data:`NotifierContext` fields; fields left out are zero.
        """
        op = NotifierCommandOp(op)
        self._command.pack(op=op, index=index, endpoint=endpoint or {}, context=context or {})
        if op is NotifierCommandOp.WRITE_ENDPOINT:
            table, value = self._endpoints, payload(codec(NotifierEndpoint), **(endpoint or {}))
        else:
            table, value = self._contexts, payload(codec(NotifierContext), **(context or {}))
        if index < len(table):
            table[index] = value

    # Delivery paths -------------------------------------------------------------------------------

    def _poll(self, endpoint, entry):
        self._counters["none"] += 1
        return NotifierResult()

    def _signal(self, endpoint, entry):
        row = self._endpoints[endpoint]
        self._counters["lock"] += 1
        return NotifierResult(signal=payload(codec(LockSignal), asid=row["asid"], addr=row["lock"]))

    def _branch(self, endpoint, entry):
        thread = self._endpoints[endpoint]["thread"]
        context = self._lowest_context(lambda c: c["busy"] and c["thread"] == thread)
        if context is None:
            return self._to_os(NotifyOsReason.NOT_RESIDENT, endpoint, thread, entry)
        if not self._in_handler[endpoint]:
            self._in_handler[endpoint] = True
            return self._deliver(endpoint, context, entry)
        queue = self._queues[endpoint]
        if len(queue) == self._queue_depth:
            return self._to_os(NotifyOsReason.QUEUE_OVERFLOW, endpoint, thread, entry)
        queue.append(entry)
        self._counters["queued"] += 1
        return NotifierResult()

    def _spawn(self, endpoint, entry):
        row = self._endpoints[endpoint]
        context = self._lowest_context(lambda c: not c["busy"])
        evict = context is None
        if evict:
            context = self._lowest_context(lambda c: c["busy"] and c["evictable"])
        if context is None:
            return self._to_os(NotifyOsReason.NO_CONTEXT, endpoint, row["thread"], entry)
        evicted = self._contexts[context]["thread"] if evict else 0
        self._contexts[context] = payload(codec(NotifierContext), busy=1, thread=row["thread"])
        self._counters["evict" if evict else "spawn"] += 1
        return NotifierResult(event=payload(
            codec(NotifyEvent), kind=NotifyEventKind.SPAWN, evict=int(evict), context=context,
            thread=row["thread"], evicted=evicted, endpoint=endpoint, pc=row["handler_pc"],
            sp=row["stack"], entry=entry))

    def _interrupt(self, endpoint, entry):
        return self._to_os(NotifyOsReason.INTERRUPT, endpoint, self._endpoints[endpoint]["thread"],
                           entry, counter="interrupt")

    def _deliver(self, endpoint, context, entry):
        """Make ``context`` branch to the handler of ``endpoint`` with ``entry``."""
        row = self._endpoints[endpoint]
        self._counters["branch"] += 1
        return NotifierResult(event=payload(
            codec(NotifyEvent), kind=NotifyEventKind.BRANCH, context=context, thread=row["thread"],
            endpoint=endpoint, pc=row["handler_pc"], entry=entry))

    def _to_os(self, reason, endpoint, thread, entry, counter="os"):
        self._counters[counter] += 1
        return NotifierResult(os_event=payload(codec(NotifyOsEvent), reason=reason,
                                               endpoint=endpoint, thread=thread, entry=entry))

    # Handler ends ---------------------------------------------------------------------------------

    def _return(self, endpoint, context):
        if endpoint >= len(self._endpoints) or not self._in_handler[endpoint]:
            self._counters["bad_returns"] += 1
            return NotifierResult()
        queue = self._queues[endpoint]
        if not queue:
            self._in_handler[endpoint] = False
            return NotifierResult()
        return self._deliver(endpoint, context, queue.popleft())

    def _exit(self, context):
        if context >= len(self._contexts):
            self._counters["bad_returns"] += 1
        else:
            self._contexts[context] = payload(codec(NotifierContext))
        return NotifierResult()

    # Helpers --------------------------------------------------------------------------------------

    def _lowest_context(self, predicate):
        return next((index for index, row in enumerate(self._contexts) if predicate(row)), None)

    @staticmethod
    def _index(name, index, table):
        if not 0 <= index < len(table):
            raise ValueError(f"{name} {index!r} is not in the table (0 .. {len(table) - 1})")
        return index
