from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (ASID_BITS, LOCK_SIGNAL_RESERVE, MAX_CONTEXTS, THREAD_BITS, VA_BITS, LockKind,
                      LockOp, LockOsEvent, LockOsReason, LockReleased, LockRequest, LockResponse,
                      LockSignal, LockStatus, Residency)
from .onehot import lowest, select, set_indexed
from .params import check_int

__all__ = ["LockTable"]


class LockTable(wiring.Component):
    """Lock box: mutual exclusion between threads and message notification, with no OS in the
    common path.

    A lock is named by (ASID, virtual address). An entry exists while the lock is in use: a
    mutex while it is held, a notification lock while it counts remembered signals or has
    parked threads. Threads parked on any lock share a pool of ``waiters`` slots, linked per
    lock into a first-come-first-served queue.

    **Core side** (``request`` -> ``response``, one answer per request, in order):

    * ACQUIRE takes a free mutex (GRANTED) or parks the thread (BLOCKED; also when it is the
      owner: the software deadlocks itself);
    * RELEASE by the owner hands the mutex to the oldest parked thread, or frees it (GRANTED);
      by anyone else, or of a lock not held: NOT_OWNER;
    * WAIT consumes a remembered signal (GRANTED) or parks the thread (BLOCKED).

    A mutex operation on a notification lock, or WAIT on a mutex, is WRONG_KIND; an operation
    that needs an entry or a waiter slot when none is free is FULL. Neither changes anything.
    Core-side operations leave the last :data:`rtl.layouts.LOCK_SIGNAL_RESERVE` free entries to
    SIGNAL: locks the core fills the table with cannot hold up the NI's SIGNALs.

    **NI side** (``signal``): SIGNAL wakes the oldest thread parked on the lock, or is
    remembered (the count rises), so a later WAIT returns at once: no wake-up is ever lost. A
    SIGNAL the table cannot take (no free entry, or the count at ``2**count_bits - 1``) is held
    (``ready`` low) until it can: never dropped. A SIGNAL to a mutex changes nothing and is
    reported on ``os`` as BAD_SIGNAL.

    **Wake-ups.** A parked thread that goes on (it got the mutex, or consumed a signal) is
    announced on ``released`` with the lock and the context that holds it, if a context does
    (``residency``, written by the OS as it schedules threads); else on ``os`` as NOT_RESIDENT,
    for the OS to make the thread runnable.

    **Timing.** One operation per cycle, from ``residency`` first, then ``signal`` and
    ``request`` taking turns when both wait. Results are registered: the answer or event of an
    operation taken at an edge is valid from that edge. A port's operation is taken only while
    the three outputs can take a result. A SIGNAL that waits behind a request is taken at the
    next edge, so a SIGNAL reaches ``released`` in at most 2 cycles (when no residency write
    comes first and the outputs are taken). While a SIGNAL is held, it still takes its turns, so
    requests are taken every other cycle.

    Parameters
    ----------
    entries : int
        Locks in use at a time, 2 to 256.
    waiters : int
        Threads parked at a time, over all locks, 1 to 256.
    contexts : int
        SMT contexts whose residency the table knows, 1 to :data:`rtl.layouts.MAX_CONTEXTS`.
    count_bits : int
        Width of a notification lock's count of remembered signals, 1 to 16.

    Members
    -------
    request : In(stream.Signature(LockRequest))
    response : Out(stream.Signature(LockResponse))
    signal : In(stream.Signature(LockSignal))
    released : Out(stream.Signature(LockReleased))
    os : Out(stream.Signature(LockOsEvent))
    residency : In(stream.Signature(Residency))
    entries_used : Out(range(entries + 1))
        Lock entries in use.
    waiters_used : Out(range(waiters + 1))
        Threads parked.
    """

    def __init__(self, *, entries=32, waiters=32, contexts=4, count_bits=8):
        self._entries = check_int(self, "entries", entries, 2, 256)
        self._waiters = check_int(self, "waiters", waiters, 1, 256)
        self._contexts = check_int(self, "contexts", contexts, 1, MAX_CONTEXTS)
        self._count_bits = check_int(self, "count_bits", count_bits, 1, 16)
        super().__init__({
            "request": In(stream.Signature(LockRequest)),
            "response": Out(stream.Signature(LockResponse)),
            "signal": In(stream.Signature(LockSignal)),
            "released": Out(stream.Signature(LockReleased)),
            "os": Out(stream.Signature(LockOsEvent)),
            "residency": In(stream.Signature(Residency)),
            "entries_used": Out(range(entries + 1)),
            "waiters_used": Out(range(waiters + 1)),
        })

    @property
    def entries(self):
        return self._entries

    @property
    def waiters(self):
        return self._waiters

    @property
    def contexts(self):
        return self._contexts

    @property
    def count_bits(self):
        return self._count_bits

    def elaborate(self, platform):
        m = Module()
        entries, waiters = self._entries, self._waiters
        slot_shape = range(max(waiters, 2))

        # Storage: lock entries, waiter slots (a linked queue per lock) and residency.
        in_use = Signal(entries)
        asid = [Signal(ASID_BITS, name=f"asid{e}") for e in range(entries)]
        addr = [Signal(VA_BITS, name=f"addr{e}") for e in range(entries)]
        kind = [Signal(LockKind, name=f"kind{e}") for e in range(entries)]
        owner = [Signal(THREAD_BITS, name=f"owner{e}") for e in range(entries)]
        count = [Signal(self._count_bits, name=f"count{e}") for e in range(entries)]
        waiting = Signal(entries)
        head = [Signal(slot_shape, name=f"head{e}") for e in range(entries)]
        tail = [Signal(slot_shape, name=f"tail{e}") for e in range(entries)]
        parked = Signal(waiters)
        parked_thread = [Signal(THREAD_BITS, name=f"parked_thread{w}") for w in range(waiters)]
        parked_next = [Signal(slot_shape, name=f"parked_next{w}") for w in range(waiters)]
        resident = Signal(self._contexts)
        resident_thread = [Signal(THREAD_BITS, name=f"resident_thread{c}")
                           for c in range(self._contexts)]

        # Which port's operation is up: residency, then signal and request by turns.
        outputs_free = Signal()
        m.d.comb += outputs_free.eq((~self.response.valid | self.response.ready)
                                    & (~self.released.valid | self.released.ready)
                                    & (~self.os.valid | self.os.ready))
        signal_turn = Signal()
        use_residency, use_signal, use_request = Signal(), Signal(), Signal()
        m.d.comb += [
            use_residency.eq(self.residency.valid),
            use_signal.eq(~use_residency & self.signal.valid
                          & (signal_turn | ~self.request.valid)),
            use_request.eq(~use_residency & ~use_signal & self.request.valid),
        ]
        with m.If(outputs_free & self.signal.valid & self.request.valid & ~use_residency):
            m.d.sync += signal_turn.eq(~use_signal)

        # The operation's lock: compare with every entry; the entry's fields.
        op_asid, op_addr = Signal(ASID_BITS), Signal(VA_BITS)
        m.d.comb += [
            op_asid.eq(Mux(use_signal, self.signal.payload.asid, self.request.payload.asid)),
            op_addr.eq(Mux(use_signal, self.signal.payload.addr, self.request.payload.addr)),
        ]
        hits = Signal(entries)
        m.d.comb += hits.eq(Cat(in_use[e] & (asid[e] == op_asid) & (addr[e] == op_addr)
                                for e in range(entries)))
        hit = Signal()
        m.d.comb += hit.eq(hits.any())
        hit_kind = Signal(LockKind)
        m.d.comb += hit_kind.eq(select(m, hits, kind, "hit_kind_bits"))
        hit_owner = select(m, hits, owner, "hit_owner")
        hit_count = select(m, hits, count, "hit_count")
        hit_waiting = Signal()
        m.d.comb += hit_waiting.eq((hits & waiting).any())
        hit_head = select(m, hits, head, "hit_head")
        hit_tail = select(m, hits, tail, "hit_tail")
        count_max = Signal()
        m.d.comb += count_max.eq(hit_count == (1 << self._count_bits) - 1)

        # The oldest parked thread of the lock, and whether a context holds it.
        head_one_hot = Signal(waiters)
        m.d.comb += head_one_hot.eq(Cat(hit_head == w for w in range(waiters)))
        head_thread = select(m, head_one_hot, parked_thread, "head_thread")
        head_next = select(m, head_one_hot, parked_next, "head_next")
        holds_head = Signal(self._contexts)
        m.d.comb += holds_head.eq(Cat(resident[c] & (resident_thread[c] == head_thread)
                                      for c in range(self._contexts)))
        head_context = lowest(m, holds_head, "head_context")

        # Free entry and free waiter slot: the lowest. Core-side operations leave the last
        # LOCK_SIGNAL_RESERVE free entries to SIGNAL.
        free_entry_any, spare_entry, free_slot_any = Signal(), Signal(), Signal()
        free_entries = Signal(entries)
        m.d.comb += [free_entries.eq(~in_use), free_entry_any.eq(free_entries.any()),
                     free_slot_any.eq(~parked.all())]
        spare = free_entries
        for _ in range(LOCK_SIGNAL_RESERVE):
            # Clearing the lowest set bit leaves the entries beyond it.
            spare = spare & (spare - 1)
        m.d.comb += spare_entry.eq(spare.any())
        free_entry = lowest(m, ~in_use, "free_entry")
        free_slot = lowest(m, ~parked, "free_slot")

        # What the operation does, decided below; its effects follow it.
        status = Signal(LockStatus)
        take = Signal()          # the operation is taken (a SIGNAL may have to wait)
        allocate = Signal()      # a new entry at free_entry for the operation's lock
        new_kind = Signal(LockKind)
        new_count = Signal(self._count_bits)
        free = Signal()          # the hit entry is no longer in use
        pop = Signal()           # the hit lock's oldest parked thread goes on
        push = Signal()          # the requesting thread parks at the queue's tail
        count_up, count_down = Signal(), Signal()
        hand_over = Signal()     # the mutex passes to the thread popped
        bad_signal = Signal()
        request = self.request.payload

        with m.If(use_signal):
            with m.If(hit & (hit_kind == LockKind.MUTEX)):
                m.d.comb += [take.eq(1), bad_signal.eq(1)]
            with m.Elif(hit & hit_waiting):
                m.d.comb += [take.eq(1), pop.eq(1), free.eq(hit_head == hit_tail)]
            with m.Elif(hit):
                m.d.comb += [take.eq(~count_max), count_up.eq(1)]
            with m.Else():
                m.d.comb += [take.eq(free_entry_any), allocate.eq(1),
                             new_kind.eq(LockKind.EVENT), new_count.eq(1)]
        with m.Elif(use_request):
            m.d.comb += take.eq(1)
            self._request(m, request.op, hit, hit_kind, hit_owner == request.thread, hit_waiting,
                          hit_count, spare_entry, free_slot_any,
                          status=status, allocate=allocate, new_kind=new_kind, free=free,
                          pop=pop, push=push, count_down=count_down, hand_over=hand_over)

        accept = Signal()
        m.d.comb += [
            accept.eq(outputs_free & take),
            self.signal.ready.eq(outputs_free & use_signal & take),
            self.request.ready.eq(outputs_free & use_request),
            self.residency.ready.eq(outputs_free),
        ]

        # Outputs: registered, valid from the edge that takes the operation.
        with m.If(self.response.ready):
            m.d.sync += self.response.valid.eq(0)
        with m.If(self.released.ready):
            m.d.sync += self.released.valid.eq(0)
        with m.If(self.os.ready):
            m.d.sync += self.os.valid.eq(0)
        with m.If(accept & use_request):
            m.d.sync += [self.response.valid.eq(1),
                         self.response.payload.status.eq(status),
                         self.response.payload.thread.eq(request.thread)]
        with m.If(accept & pop & holds_head.any()):
            m.d.sync += [self.released.valid.eq(1),
                         self.released.payload.context.eq(head_context),
                         self.released.payload.thread.eq(head_thread),
                         self.released.payload.asid.eq(op_asid),
                         self.released.payload.addr.eq(op_addr)]
        with m.If(accept & ((pop & ~holds_head.any()) | bad_signal)):
            m.d.sync += [self.os.valid.eq(1),
                         self.os.payload.reason.eq(Mux(bad_signal, LockOsReason.BAD_SIGNAL,
                                                       LockOsReason.NOT_RESIDENT)),
                         self.os.payload.thread.eq(Mux(bad_signal, 0, head_thread)),
                         self.os.payload.asid.eq(op_asid),
                         self.os.payload.addr.eq(op_addr)]

        # Residency: the OS names the thread a context holds.
        with m.If(use_residency & outputs_free):
            for c in range(self._contexts):
                with m.If(self.residency.payload.context == c):
                    m.d.sync += [resident[c].eq(self.residency.payload.resident),
                                 resident_thread[c].eq(self.residency.payload.thread)]

        # Entries: allocation, count, ownership, freeing.
        with m.If(accept & allocate):
            for e in range(entries):
                with m.If(free_entry == e):
                    m.d.sync += [in_use[e].eq(1), asid[e].eq(op_asid), addr[e].eq(op_addr),
                                 kind[e].eq(new_kind), owner[e].eq(request.thread),
                                 count[e].eq(new_count), waiting[e].eq(push),
                                 head[e].eq(free_slot), tail[e].eq(free_slot)]
        with m.If(accept & ~allocate):
            for e in range(entries):
                with m.If(hits[e]):
                    with m.If(free):
                        m.d.sync += [in_use[e].eq(0), waiting[e].eq(0)]
                    with m.If(count_up):
                        m.d.sync += count[e].eq(hit_count + 1)
                    with m.If(count_down):
                        m.d.sync += count[e].eq(hit_count - 1)
                    with m.If(hand_over):
                        m.d.sync += owner[e].eq(head_thread)
                    with m.If(pop):
                        m.d.sync += head[e].eq(head_next)
                        with m.If(hit_head == hit_tail):
                            m.d.sync += waiting[e].eq(0)
                    with m.If(push):
                        m.d.sync += [tail[e].eq(free_slot), waiting[e].eq(1)]
                        with m.If(~hit_waiting):
                            m.d.sync += head[e].eq(free_slot)

        # Waiter slots: a parked thread takes the lowest free slot, linked behind the tail.
        with m.If(accept & push):
            for w in range(waiters):
                with m.If(free_slot == w):
                    m.d.sync += [parked[w].eq(1), parked_thread[w].eq(request.thread)]
            with m.If(~allocate & hit_waiting):
                set_indexed(m, parked_next, hit_tail, free_slot)
        with m.If(accept & pop):
            for w in range(waiters):
                with m.If(head_one_hot[w]):
                    m.d.sync += parked[w].eq(0)

        # Occupancy, for the OS and the testbench.
        m.d.sync += [
            self.entries_used.eq(self.entries_used + (accept & allocate) - (accept & free)),
            self.waiters_used.eq(self.waiters_used + (accept & push) - (accept & pop)),
        ]
        return m

    @staticmethod
    def _request(m, op, hit, hit_kind, is_owner, hit_waiting, hit_count, spare_entry,
                 free_slot_any, *, status, allocate, new_kind, free, pop, push, count_down,
                 hand_over):
        """Decide a core-side operation (see the class description)."""
        mutex, event = hit & (hit_kind == LockKind.MUTEX), hit & (hit_kind == LockKind.EVENT)
        # An If chain, not a Switch: Yosys drops an empty default and leaves the case incomplete.
        with m.If(op == LockOp.ACQUIRE):
            with m.If(event):
                m.d.comb += status.eq(LockStatus.WRONG_KIND)
            with m.Elif(mutex):
                m.d.comb += [status.eq(Mux(free_slot_any, LockStatus.BLOCKED,
                                           LockStatus.FULL)),
                             push.eq(free_slot_any)]
            with m.Elif(spare_entry):
                m.d.comb += [status.eq(LockStatus.GRANTED), allocate.eq(1),
                             new_kind.eq(LockKind.MUTEX)]
            with m.Else():
                m.d.comb += status.eq(LockStatus.FULL)
        with m.Elif(op == LockOp.RELEASE):
            with m.If(event):
                m.d.comb += status.eq(LockStatus.WRONG_KIND)
            with m.Elif(mutex & is_owner):
                m.d.comb += [status.eq(LockStatus.GRANTED), pop.eq(hit_waiting),
                             hand_over.eq(hit_waiting), free.eq(~hit_waiting)]
            with m.Else():
                m.d.comb += status.eq(LockStatus.NOT_OWNER)
        with m.Elif(op == LockOp.WAIT):
            with m.If(mutex):
                m.d.comb += status.eq(LockStatus.WRONG_KIND)
            with m.Elif(event & (hit_count != 0)):
                m.d.comb += [status.eq(LockStatus.GRANTED), count_down.eq(1),
                             free.eq(hit_count == 1)]
            with m.Elif(event):
                m.d.comb += [status.eq(Mux(free_slot_any, LockStatus.BLOCKED,
                                           LockStatus.FULL)),
                             push.eq(free_slot_any)]
            with m.Elif(spare_entry & free_slot_any):
                m.d.comb += [status.eq(LockStatus.BLOCKED), allocate.eq(1),
                             new_kind.eq(LockKind.EVENT), push.eq(1)]
            with m.Else():
                m.d.comb += status.eq(LockStatus.FULL)
        with m.Else():
            m.d.comb += status.eq(LockStatus.WRONG_KIND)
