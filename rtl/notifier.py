from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (CONTEXT_BITS, ENDPOINT_BITS, MAX_CONTEXTS, NOTIFIER_COUNTERS, VA_BITS,
                      Completion, HandlerReturn, HandlerReturnOp, LockSignal, NotifierCommandOp,
                      NotifierContext, NotifierEndpoint, NotifyEvent, NotifyEventKind, NotifyMode,
                      NotifyOsEvent, NotifyOsReason, notifier_command_layout)
from .onehot import lowest, select
from .params import check_int

__all__ = ["Notifier"]


class Notifier(wiring.Component):
    """Applies the receiving endpoint's notification mode to each completed message.

    The OS writes an endpoint table (a :class:`rtl.layouts.NotifierEndpoint` per endpoint:
    mode, ASID, thread, lock, handler PC, stack) and a context table (a
    :class:`rtl.layouts.NotifierContext` per SMT context: busy, evictable, thread) on
    ``command``. A completion (endpoint, address of its completion entry) then goes one way:

    * NONE: nowhere (the receiver polls its ring); counted;
    * LOCK: ``signal`` carries the endpoint's lock to the LockTable;
    * BRANCH: if a context holds the endpoint's thread, ``event`` makes it branch to the handler
      PC with the entry. While that handler runs, later arrivals of the endpoint wait in its
      queue (``queue_depth`` entries) and go out one at a time, in order, each on the RETURN of
      the previous handler. A full queue, or a thread in no context, hands the arrival to the
      OS;
    * SPAWN: ``event`` starts the endpoint's thread at the handler PC with its stack on the
      lowest free context, else on the lowest context whose thread the OS marked evictable
      (``evict`` set: the core saves that thread for the OS first), else the OS gets it. The
      context is then busy with the new thread, not evictable. Every SPAWN of an endpoint runs
      as the endpoint's thread number, so handlers of one endpoint that run at once share it:
      they must not park on locks, where the table names threads by number;
    * INTERRUPT: ``os`` carries every arrival to the OS (reason INTERRUPT), which takes the
      kernel's interrupt path and delivers it to the endpoint's thread as a signal: the baseline
      the hardware mechanisms are measured against.

    ``os`` carries what the OS must deliver later (:class:`rtl.layouts.NotifyOsReason`),
    including completions for endpoints the Notifier does not have. Every completion takes
    exactly one path and counts on one ``count_*`` member: ``count_none + count_lock +
    count_branch + count_spawn + count_evict + count_os + count_interrupt`` (an INTERRUPT
    arrival counts there, not in ``count_os``) plus the arrivals waiting in queues
    equals the completions taken (``count_queued`` counts arrivals that waited; they count again
    in ``count_branch`` when delivered).

    ``handler_return`` tells the Notifier that a BRANCH handler of an endpoint returned (RETURN,
    in ``context``) or that the thread of a context exited (EXIT: the context is free). A RETURN
    for an endpoint with no handler running, or an EXIT of a context out of range, changes
    nothing and counts in ``count_bad_returns``.

    **Timing.** One input per cycle: ``handler_return`` first, then ``command``, then
    ``completion``, taken only while the three outputs can take a result. Outputs are
    registered: a completion taken at an edge shows its event, signal or OS hand-off from that
    edge, so the core takes it at the next.

    Parameters
    ----------
    endpoints : int
        Endpoints of the node, 1 to 16.
    contexts : int
        SMT contexts, 1 to :data:`rtl.layouts.MAX_CONTEXTS`.
    queue_depth : int
        Arrivals held per endpoint while its BRANCH handler runs, 1 to 16.

    Members
    -------
    completion : In(stream.Signature(Completion))
    handler_return : In(stream.Signature(HandlerReturn))
    command : In(stream.Signature(notifier_command_layout(endpoints, contexts)))
    event : Out(stream.Signature(NotifyEvent))
    signal : Out(stream.Signature(LockSignal))
    os : Out(stream.Signature(NotifyOsEvent))
    count_none, count_lock, count_branch, count_queued, count_spawn, count_evict, count_os, \
    count_interrupt, count_bad_returns : Out(32)
        The path counters (wrapping).
    """

    def __init__(self, *, endpoints=8, contexts=4, queue_depth=4):
        self._endpoints = check_int(self, "endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        self._contexts = check_int(self, "contexts", contexts, 1, MAX_CONTEXTS)
        self._queue_depth = check_int(self, "queue_depth", queue_depth, 1, 16)
        super().__init__({
            "completion": In(stream.Signature(Completion)),
            "handler_return": In(stream.Signature(HandlerReturn)),
            "command": In(stream.Signature(notifier_command_layout(endpoints, contexts))),
            "event": Out(stream.Signature(NotifyEvent)),
            "signal": Out(stream.Signature(LockSignal)),
            "os": Out(stream.Signature(NotifyOsEvent)),
            **{f"count_{name}": Out(32) for name in NOTIFIER_COUNTERS},
        })

    @property
    def endpoints(self):
        return self._endpoints

    @property
    def contexts(self):
        return self._contexts

    @property
    def queue_depth(self):
        return self._queue_depth

    def elaborate(self, platform):
        m = Module()
        endpoints, contexts, depth = self._endpoints, self._contexts, self._queue_depth

        # Storage: the two tables, and per endpoint the handler flag and the arrivals' queue.
        table = [Signal(NotifierEndpoint, name=f"endpoint{e}") for e in range(endpoints)]
        context = [Signal(NotifierContext, name=f"context{c}") for c in range(contexts)]
        in_handler = Signal(endpoints)
        queue = [[Signal(VA_BITS, name=f"queue{e}_{i}") for i in range(depth)]
                 for e in range(endpoints)]
        pointer = range(max(depth, 2))
        queue_head = [Signal(pointer, name=f"queue{e}_head") for e in range(endpoints)]
        queue_tail = [Signal(pointer, name=f"queue{e}_tail") for e in range(endpoints)]
        queue_count = [Signal(range(depth + 1), name=f"queue{e}_count") for e in range(endpoints)]

        # Which input is up.
        outputs_free = Signal()
        m.d.comb += outputs_free.eq((~self.event.valid | self.event.ready)
                                    & (~self.signal.valid | self.signal.ready)
                                    & (~self.os.valid | self.os.ready))
        use_return, use_command, use_completion = Signal(), Signal(), Signal()
        m.d.comb += [
            use_return.eq(self.handler_return.valid),
            use_command.eq(~use_return & self.command.valid),
            use_completion.eq(~use_return & ~use_command & self.completion.valid),
            self.handler_return.ready.eq(outputs_free),
            self.command.ready.eq(outputs_free & ~use_return),
            self.completion.ready.eq(outputs_free & use_completion),
        ]
        returning = Signal()
        arriving = Signal()
        m.d.comb += [returning.eq(outputs_free & use_return),
                     arriving.eq(outputs_free & use_completion)]

        # The endpoint concerned (arrival or return) and its state.
        ret, arrival = self.handler_return.payload, self.completion.payload
        endpoint = Signal(ENDPOINT_BITS)
        m.d.comb += endpoint.eq(Mux(use_return, ret.endpoint, arrival.endpoint))
        selected = Signal(endpoints)
        m.d.comb += selected.eq(Cat(endpoint == e for e in range(endpoints)))
        known = Signal()
        m.d.comb += known.eq(selected.any())
        entry = Signal(NotifierEndpoint)
        m.d.comb += entry.eq(select(m, selected, table, "entry_bits"))
        busy_handler = Signal()
        m.d.comb += busy_handler.eq((selected & in_handler).any())
        count = select(m, selected, queue_count, "queue_count")
        head = select(m, selected, queue_head, "queue_head")
        tail = select(m, selected, queue_tail, "queue_tail")
        head_entry = Signal(VA_BITS)
        m.d.comb += head_entry.eq(select(m, Cat(selected[e] & (queue_head[e] == i)
                                                 for e in range(endpoints)
                                                 for i in range(depth)),
                                         [queue[e][i] for e in range(endpoints)
                                          for i in range(depth)], "queue_head_entry"))

        # Contexts: the one holding the endpoint's thread, the free one, the evictable one.
        holds = Signal(contexts)
        free = Signal(contexts)
        evictable = Signal(contexts)
        m.d.comb += [
            holds.eq(Cat(ctx.busy & (ctx.thread == entry.thread) for ctx in context)),
            free.eq(Cat(~ctx.busy for ctx in context)),
            evictable.eq(Cat(ctx.busy & ctx.evictable for ctx in context)),
        ]
        holder = lowest(m, holds, "holder")
        free_context = lowest(m, free, "free_context")
        victim = lowest(m, evictable, "victim")
        victim_thread = Signal.like(context[0].thread)
        m.d.comb += victim_thread.eq(select(m, Cat(victim == c for c in range(contexts)),
                                            [ctx.thread for ctx in context], "victim_bits"))

        # What the input does.
        branch, spawn, evict, signal, push, pop, to_os = (Signal(name=name) for name in (
            "branch", "spawn", "evict", "do_signal", "push", "pop", "to_os"))
        reason = Signal(NotifyOsReason)
        counted = {name: Signal(name=f"counted_{name}") for name in NOTIFIER_COUNTERS}
        target = Signal(CONTEXT_BITS)      # a RETURN's context passes through whole
        with m.If(use_return & (ret.op == HandlerReturnOp.RETURN)):
            with m.If(~known | ~busy_handler):
                m.d.comb += counted["bad_returns"].eq(1)
            with m.Elif(count != 0):
                m.d.comb += [pop.eq(1), branch.eq(1), target.eq(ret.context),
                             counted["branch"].eq(1)]
        with m.Elif(use_return):
            if contexts < MAX_CONTEXTS:
                m.d.comb += counted["bad_returns"].eq(ret.context >= contexts)
        with m.Elif(use_completion & ~known):
            m.d.comb += [to_os.eq(1), reason.eq(NotifyOsReason.BAD_ENDPOINT)]
        with m.Elif(use_completion):
            self._arrival(m, entry.mode, holds.any(), busy_handler, count == depth, free.any(),
                          evictable.any(), counted=counted, branch=branch, spawn=spawn,
                          evict=evict, signal=signal, push=push, to_os=to_os, reason=reason)
            m.d.comb += target.eq(Mux(branch, holder, Mux(evict, victim, free_context)))
        m.d.comb += counted["os"].eq(to_os & ~counted["interrupt"])

        # Outputs: registered.
        for port in (self.event, self.signal, self.os):
            with m.If(port.ready):
                m.d.sync += port.valid.eq(0)
        taken = Signal()
        m.d.comb += taken.eq(returning | arriving)
        handed_entry = Signal(VA_BITS)
        m.d.comb += handed_entry.eq(Mux(pop, head_entry, arrival.entry))
        with m.If(taken & (branch | spawn)):
            m.d.sync += [
                self.event.valid.eq(1),
                self.event.payload.kind.eq(Mux(spawn, NotifyEventKind.SPAWN,
                                               NotifyEventKind.BRANCH)),
                self.event.payload.evict.eq(evict),
                self.event.payload.context.eq(target),
                self.event.payload.thread.eq(entry.thread),
                self.event.payload.evicted.eq(Mux(evict, victim_thread, 0)),
                self.event.payload.endpoint.eq(endpoint),
                self.event.payload.pc.eq(entry.handler_pc),
                self.event.payload.sp.eq(Mux(spawn, entry.stack, 0)),
                self.event.payload.entry.eq(handed_entry),
            ]
        with m.If(taken & signal):
            m.d.sync += [self.signal.valid.eq(1),
                         self.signal.payload.asid.eq(entry.asid),
                         self.signal.payload.addr.eq(entry.lock)]
        with m.If(taken & to_os):
            m.d.sync += [self.os.valid.eq(1),
                         self.os.payload.reason.eq(reason),
                         self.os.payload.endpoint.eq(endpoint),
                         self.os.payload.thread.eq(Mux(known, entry.thread, 0)),
                         self.os.payload.entry.eq(arrival.entry)]

        # Endpoint state: handler flag and queue.
        for e in range(endpoints):
            with m.If(taken & selected[e]):
                with m.If(branch & ~pop):
                    m.d.sync += in_handler[e].eq(1)
                with m.If(use_return & (ret.op == HandlerReturnOp.RETURN) & (count == 0)):
                    m.d.sync += in_handler[e].eq(0)
                with m.If(push):
                    m.d.sync += [queue_count[e].eq(count + 1),
                                 queue_tail[e].eq(Mux(tail == depth - 1, 0, tail + 1))]
                    for i in range(depth):
                        with m.If(tail == i):
                            m.d.sync += queue[e][i].eq(arrival.entry)
                with m.If(pop):
                    m.d.sync += [queue_count[e].eq(count - 1),
                                 queue_head[e].eq(Mux(head == depth - 1, 0, head + 1))]

        # Context table: a spawn takes a context, an exit frees one, the OS writes any.
        command = self.command.payload
        for c, ctx in enumerate(context):
            with m.If(taken & (spawn | evict) & (target == c)):
                m.d.sync += [ctx.busy.eq(1), ctx.evictable.eq(0), ctx.thread.eq(entry.thread)]
            with m.If(returning & (ret.op == HandlerReturnOp.EXIT) & (ret.context == c)):
                m.d.sync += ctx.eq(0)
            with m.If(outputs_free & use_command & (command.op == NotifierCommandOp.WRITE_CONTEXT)
                      & (command.index == c)):
                m.d.sync += ctx.eq(command.context)
        for e, row in enumerate(table):
            with m.If(outputs_free & use_command
                      & (command.op == NotifierCommandOp.WRITE_ENDPOINT) & (command.index == e)):
                m.d.sync += row.eq(command.endpoint)

        # Counters.
        for name, flag in counted.items():
            counter = getattr(self, f"count_{name}")
            with m.If(taken & flag):
                m.d.sync += counter.eq(counter + 1)
        return m

    @staticmethod
    def _arrival(m, mode, resident, busy_handler, queue_full, any_free, any_evictable, *,
                 counted, branch, spawn, evict, signal, push, to_os, reason):
        """Decide the path of an arrival at a known endpoint (see the class description)."""
        with m.If(mode == NotifyMode.NONE):
            m.d.comb += counted["none"].eq(1)
        with m.Elif(mode == NotifyMode.LOCK):
            m.d.comb += [signal.eq(1), counted["lock"].eq(1)]
        with m.Elif(mode == NotifyMode.BRANCH):
            with m.If(~resident):
                m.d.comb += [to_os.eq(1), reason.eq(NotifyOsReason.NOT_RESIDENT)]
            with m.Elif(busy_handler & queue_full):
                m.d.comb += [to_os.eq(1), reason.eq(NotifyOsReason.QUEUE_OVERFLOW)]
            with m.Elif(busy_handler):
                m.d.comb += [push.eq(1), counted["queued"].eq(1)]
            with m.Else():
                m.d.comb += [branch.eq(1), counted["branch"].eq(1)]
        with m.Elif(mode == NotifyMode.SPAWN):
            with m.If(any_free):
                m.d.comb += [spawn.eq(1), counted["spawn"].eq(1)]
            with m.Elif(any_evictable):
                m.d.comb += [spawn.eq(1), evict.eq(1), counted["evict"].eq(1)]
            with m.Else():
                m.d.comb += [to_os.eq(1), reason.eq(NotifyOsReason.NO_CONTEXT)]
        with m.Elif(mode == NotifyMode.INTERRUPT):
            m.d.comb += [to_os.eq(1), reason.eq(NotifyOsReason.INTERRUPT),
                         counted["interrupt"].eq(1)]
        with m.Else():
            # (a mode no NotifyMode names: none of the NI's writers sends one; read as NONE)
            m.d.comb += counted["none"].eq(1)
