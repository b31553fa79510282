"""The lock table's reference model follows every rule of its specification."""

import random
from collections import Counter, defaultdict, deque

import pytest

from behavioral.locktable import LockResult, LockTableModel
from rtl.layouts import LockKind, LockOp, LockOsEvent, LockOsReason, LockReleased, LockStatus, codec

ASID, ADDR = 3, 0x7f00_1000
ACQUIRE, RELEASE, WAIT = LockOp.ACQUIRE, LockOp.RELEASE, LockOp.WAIT
GRANTED, BLOCKED, FULL = LockStatus.GRANTED, LockStatus.BLOCKED, LockStatus.FULL


def released(context, thread, asid=ASID, addr=ADDR):
    return {"context": context, "thread": thread, "asid": asid, "addr": addr}


def os_event(reason, thread, asid=ASID, addr=ADDR):
    return {"reason": reason, "thread": thread, "asid": asid, "addr": addr}


def resident_table(threads, **kwargs):
    """Return a model whose context ``i`` holds ``threads[i]``."""
    model = LockTableModel(**kwargs)
    for context, thread in enumerate(threads):
        model.residency(context, True, thread)
    return model


def snapshot(model, keys):
    return (model.free_entries, model.free_waiters,
            [(model.kind(*k), model.owner(*k), model.count(*k), model.parked(*k)) for k in keys])


# Mutexes ------------------------------------------------------------------------------------------

def test_acquire_grants_a_free_mutex_and_parks_contenders():
    model = LockTableModel()
    assert model.request(ACQUIRE, ASID, ADDR, 1) == LockResult(GRANTED)
    assert (model.kind(ASID, ADDR), model.owner(ASID, ADDR)) == (LockKind.MUTEX, 1)
    assert model.request(ACQUIRE, ASID, ADDR, 2) == LockResult(BLOCKED)
    assert model.parked(ASID, ADDR) == [2]
    assert (model.free_entries, model.free_waiters) == (31, 31)


def test_acquire_by_the_owner_parks_it():
    model = LockTableModel()
    model.request(ACQUIRE, ASID, ADDR, 1)
    assert model.request(ACQUIRE, ASID, ADDR, 1) == LockResult(BLOCKED)
    assert (model.owner(ASID, ADDR), model.parked(ASID, ADDR)) == (1, [1])


def test_locks_are_named_by_asid_and_address():
    model = LockTableModel()
    for asid, addr in [(ASID, ADDR), (ASID + 1, ADDR), (ASID, ADDR + 8)]:
        assert model.request(ACQUIRE, asid, addr, 1).status is GRANTED
    assert model.free_entries == 29


def test_release_hands_the_mutex_over_in_fifo_order():
    model = resident_table([5, 4, 3, 2])
    for thread in (1, 2, 3, 4):
        model.request(ACQUIRE, ASID, ADDR, thread)
    assert model.request(RELEASE, ASID, ADDR, 1) == LockResult(GRANTED, released(3, 2))
    assert (model.owner(ASID, ADDR), model.parked(ASID, ADDR)) == (2, [3, 4])
    assert model.request(RELEASE, ASID, ADDR, 2) == LockResult(GRANTED, released(2, 3))
    assert model.request(RELEASE, ASID, ADDR, 3) == LockResult(GRANTED, released(1, 4))
    assert model.free_waiters == 32
    assert model.request(RELEASE, ASID, ADDR, 4) == LockResult(GRANTED)
    assert model.kind(ASID, ADDR) is None and model.free_entries == 32


def test_handover_to_a_thread_in_no_context_goes_to_the_os():
    model = resident_table([1])
    model.request(ACQUIRE, ASID, ADDR, 1)
    model.request(ACQUIRE, ASID, ADDR, 2)
    want = os_event(LockOsReason.NOT_RESIDENT, 2)
    assert model.request(RELEASE, ASID, ADDR, 1) == LockResult(GRANTED, os_event=want)
    assert model.owner(ASID, ADDR) == 2


def test_residency_names_the_lowest_context_and_follows_updates():
    model = resident_table([9, 2, 2])
    assert model.resident_context(2) == 1
    model.residency(1, False, 2)
    assert model.resident_context(2) == 2
    model.residency(2, False, 2)
    assert model.resident_context(2) is None
    model.residency(0, True, 2)             # rescheduled into another context
    assert model.resident_context(2) == 0


def test_residency_of_a_context_beyond_the_table_changes_nothing():
    model = LockTableModel(contexts=2)
    model.residency(5, True, 7)
    assert model.resident_context(7) is None


@pytest.mark.parametrize("setup", [[], [(ACQUIRE, 1)]], ids=["no entry", "other owner"])
def test_release_by_a_non_owner_changes_nothing(setup):
    model = LockTableModel()
    for op, thread in setup:
        model.request(op, ASID, ADDR, thread)
    before = snapshot(model, [(ASID, ADDR)])
    assert model.request(RELEASE, ASID, ADDR, 2) == LockResult(LockStatus.NOT_OWNER)
    assert snapshot(model, [(ASID, ADDR)]) == before


@pytest.mark.parametrize("first, second", [(WAIT, ACQUIRE), (WAIT, RELEASE), (ACQUIRE, WAIT)])
def test_an_operation_of_the_other_kind_changes_nothing(first, second):
    model = LockTableModel()
    model.request(first, ASID, ADDR, 1)
    before = snapshot(model, [(ASID, ADDR)])
    assert model.request(second, ASID, ADDR, 2) == LockResult(LockStatus.WRONG_KIND)
    assert snapshot(model, [(ASID, ADDR)]) == before


def test_signal_of_a_mutex_goes_to_the_os_and_changes_nothing():
    model = LockTableModel()
    model.request(ACQUIRE, ASID, ADDR, 1)
    model.request(ACQUIRE, ASID, ADDR, 2)
    before = snapshot(model, [(ASID, ADDR)])
    assert model.signal(ASID, ADDR) == LockResult(os_event=os_event(LockOsReason.BAD_SIGNAL, 0))
    assert snapshot(model, [(ASID, ADDR)]) == before


# Notification locks -------------------------------------------------------------------------------

def test_signal_with_no_waiter_is_remembered_and_consumed_by_wait():
    model = LockTableModel()
    assert model.signal(ASID, ADDR) == LockResult()
    assert (model.kind(ASID, ADDR), model.count(ASID, ADDR)) == (LockKind.EVENT, 1)
    assert model.signal(ASID, ADDR) == LockResult()
    assert model.request(WAIT, ASID, ADDR, 1) == LockResult(GRANTED)
    assert model.count(ASID, ADDR) == 1
    assert model.request(WAIT, ASID, ADDR, 1) == LockResult(GRANTED)
    assert model.kind(ASID, ADDR) is None and model.free_entries == 32
    assert model.request(WAIT, ASID, ADDR, 1) == LockResult(BLOCKED)


def test_signal_releases_parked_threads_in_fifo_order():
    model = resident_table([0, 0, 2])
    for thread in (1, 2, 3):
        assert model.request(WAIT, ASID, ADDR, thread) == LockResult(BLOCKED)
    assert (model.count(ASID, ADDR), model.free_waiters) == (0, 29)
    assert model.signal(ASID, ADDR) == LockResult(
        os_event=os_event(LockOsReason.NOT_RESIDENT, 1))
    assert model.signal(ASID, ADDR) == LockResult(released=released(2, 2))
    assert model.parked(ASID, ADDR) == [3]
    assert model.signal(ASID, ADDR) == LockResult(os_event=os_event(LockOsReason.NOT_RESIDENT, 3))
    assert model.kind(ASID, ADDR) is None and model.free_waiters == 32
    assert model.signal(ASID, ADDR) == LockResult()
    assert model.count(ASID, ADDR) == 1


def test_signal_at_the_count_maximum_is_not_accepted():
    model = LockTableModel(count_bits=2)
    for _ in range(3):
        assert model.signal(ASID, ADDR) == LockResult()
    before = snapshot(model, [(ASID, ADDR)])
    assert model.signal(ASID, ADDR) is None
    assert snapshot(model, [(ASID, ADDR)]) == before
    model.request(WAIT, ASID, ADDR, 1)
    assert model.signal(ASID, ADDR) == LockResult()
    assert model.count(ASID, ADDR) == 3


# Capacity -----------------------------------------------------------------------------------------

def test_no_free_entry_makes_requests_full_and_signals_wait():
    model = LockTableModel(entries=2)
    model.request(ACQUIRE, ASID, 0x10, 1)
    model.signal(ASID, 0x20)
    keys = [(ASID, 0x10), (ASID, 0x20), (ASID, ADDR)]
    before = snapshot(model, keys)
    assert model.request(ACQUIRE, ASID, ADDR, 2) == LockResult(FULL)
    assert model.request(WAIT, ASID, ADDR, 2) == LockResult(FULL)
    assert model.signal(ASID, ADDR) is None
    assert snapshot(model, keys) == before
    model.request(RELEASE, ASID, 0x10, 1)
    assert model.signal(ASID, ADDR) == LockResult()
    assert model.count(ASID, ADDR) == 1


def test_no_free_waiter_slot_makes_parking_requests_full():
    model = LockTableModel(waiters=2)
    model.request(WAIT, ASID, 0x10, 1)
    model.request(ACQUIRE, ASID, 0x20, 2)
    model.request(ACQUIRE, ASID, 0x20, 3)
    keys = [(ASID, 0x10), (ASID, 0x20), (ASID, ADDR)]
    before = snapshot(model, keys)
    assert model.request(WAIT, ASID, 0x10, 4) == LockResult(FULL)
    assert model.request(ACQUIRE, ASID, 0x20, 4) == LockResult(FULL)
    assert model.request(WAIT, ASID, ADDR, 4) == LockResult(FULL)     # an entry is free
    assert snapshot(model, keys) == before
    assert model.request(ACQUIRE, ASID, ADDR, 4) == LockResult(GRANTED)  # needs no slot
    model.signal(ASID, 0x10)
    assert model.request(WAIT, ASID, 0x10, 4) == LockResult(BLOCKED)


# Formats and checks -------------------------------------------------------------------------------

def test_events_compare_equal_to_unpacked_payloads():
    model = resident_table([0, 6])
    model.request(WAIT, ASID, ADDR, 6)
    model.request(WAIT, ASID, ADDR, 7)
    model.request(ACQUIRE, ASID, 0x40, 1)
    got = [model.signal(ASID, ADDR).released, model.signal(ASID, ADDR).os_event,
           model.signal(ASID, 0x40).os_event]
    want = [codec(LockReleased).unpack(codec(LockReleased).pack(context=1, thread=6, asid=ASID,
                                                                addr=ADDR)),
            codec(LockOsEvent).unpack(codec(LockOsEvent).pack(
                reason=LockOsReason.NOT_RESIDENT, thread=7, asid=ASID, addr=ADDR)),
            codec(LockOsEvent).unpack(codec(LockOsEvent).pack(
                reason=LockOsReason.BAD_SIGNAL, asid=ASID, addr=0x40))]
    assert got == want
    assert all(type(g[k]) is type(w[k]) for g, w in zip(got, want) for k in w)


@pytest.mark.parametrize("kwargs, error", [
    (dict(entries=0), "entries 0 must be an integer 2 .. 256"),
    (dict(waiters=-1), "waiters -1 must be an integer 1 .. 256"),
    (dict(contexts=9), "contexts 9 must be an integer 1 .. 8"),
    (dict(count_bits=2.0), "count_bits 2.0 must be an integer 1 .. 16"),
])
def test_rejects_bad_parameters(kwargs, error):
    with pytest.raises(ValueError, match=error):
        LockTableModel(**kwargs)


@pytest.mark.parametrize("call, error", [
    (lambda m: m.request(ACQUIRE, 1 << 8, ADDR, 1), "'asid' is 8 bits wide"),
    (lambda m: m.request(WAIT, ASID, 1 << 48, 1), "'addr' is 48 bits wide"),
    (lambda m: m.request(RELEASE, ASID, ADDR, 256), "'thread' is 8 bits wide"),
    (lambda m: m.request(3, ASID, ADDR, 1), "3 is not a valid LockOp"),
    (lambda m: m.signal(-1, ADDR), "'asid' is 8 bits wide"),
    (lambda m: m.residency(8, True, 1), "'context' is 3 bits wide"),
])
def test_rejects_what_the_ports_cannot_carry(call, error):
    with pytest.raises(ValueError, match=error):
        call(LockTableModel())


# Randomized ---------------------------------------------------------------------------------------

class Traffic:
    """Random operations on a small table, checked against invariants the test keeps itself."""

    KEYS = [(asid, addr) for asid in (1, 2) for addr in (0x100, 0x200, 0x300)]

    def __init__(self, seed):
        self.seed = seed
        self.rng = random.Random(seed)
        self.model = LockTableModel(entries=4, waiters=5, contexts=3, count_bits=2)
        self.contexts = [None] * 3
        self.fifo = defaultdict(deque)          # key -> threads parked, in arrival order
        self.signals = Counter()                # key -> accepted signals not yet consumed
        self.owners = {}                        # key -> thread holding the mutex
        self.paths = Counter()

    def check(self, condition, what):
        assert condition, f"seed {self.seed}: {what}"

    def step(self):
        action = self.rng.choices([self.request, self.signal, self.residency], [6, 3, 1])[0]
        action(self.rng.choice(self.KEYS))
        self.check_table()

    def request(self, key):
        op, thread = self.rng.choice(list(LockOp)), self.rng.randrange(8)
        if op is RELEASE and self.owners.get(key) is not None and self.rng.random() < 0.8:
            thread = self.owners[key]           # else mutexes stay held and the table clogs
        before = snapshot(self.model, self.KEYS)
        result = self.model.request(op, *key, thread)
        self.paths[op, result.status] += 1
        if result.status is BLOCKED:
            self.fifo[key].append(thread)
        if result.status in (FULL, LockStatus.NOT_OWNER, LockStatus.WRONG_KIND):
            self.check(snapshot(self.model, self.KEYS) == before, f"{op} {result} changed state")
        if op is WAIT and result.status is GRANTED:
            self.signals[key] -= 1
        handed = self.check_release(key, result, op is RELEASE and result.status is GRANTED)
        if op is ACQUIRE and result.status is GRANTED:
            self.owners[key] = thread
        if op is RELEASE and result.status is GRANTED:
            self.owners[key] = handed               # None: the mutex was freed

    def signal(self, key):
        if self.owners.get(key) is not None:
            key = self.rng.choice(self.KEYS)    # fewer BAD_SIGNALs, more signals that count
        before = snapshot(self.model, self.KEYS)
        result = self.model.signal(*key)
        self.paths["signal", None if result is None else "accepted"] += 1
        if result is None:
            self.check(snapshot(self.model, self.KEYS) == before, "held signal changed state")
            return
        reason = result.os_event and result.os_event["reason"]
        if reason is LockOsReason.BAD_SIGNAL:
            self.paths["bad signal"] += 1
            self.check(snapshot(self.model, self.KEYS) == before, "bad signal changed state")
            return
        self.signals[key] += 1
        if self.check_release(key, result, bool(self.fifo[key])) is not None:
            self.signals[key] -= 1

    def residency(self, key):
        context, thread = self.rng.randrange(3), self.rng.randrange(8)
        resident = self.rng.random() < 0.7
        self.model.residency(context, resident, thread)
        self.contexts[context] = thread if resident else None

    def check_release(self, key, result, handover):
        """Check that the result releases the key's oldest parked thread if and only if
        ``handover`` and names its context; return the thread released, or None."""
        event = result.released or result.os_event
        self.check((event is not None) == (handover and bool(self.fifo[key])),
                   f"{key}: release {event} unexpected")
        if event is None:
            return None
        thread = self.fifo[key].popleft()
        self.check(event["thread"] == thread, f"{key}: released {event}, head was {thread}")
        context = self.contexts.index(thread) if thread in self.contexts else None
        self.paths["released" if context is not None else "os"] += 1
        if context is not None:
            want = LockResult(result.status, released(context, thread, *key))
        else:
            want = LockResult(result.status,
                              os_event=os_event(LockOsReason.NOT_RESIDENT, thread, *key))
        self.check(result == want, f"{key}: {result}, expected {want}")
        return thread

    def check_table(self):
        parked = sum(len(f) for f in self.fifo.values())
        self.check(self.model.free_waiters == 5 - parked, "waiter slots leaked")
        live = [k for k in self.KEYS if self.model.kind(*k) is not None]
        self.check(self.model.free_entries == 4 - len(live), "entries leaked")
        for key in self.KEYS:
            self.check(self.model.parked(*key) == list(self.fifo[key]), f"{key}: FIFO order")
            self.check(self.model.owner(*key) == self.owners.get(key), f"{key}: owner")
            if self.model.kind(*key) is LockKind.EVENT:
                self.check(self.model.count(*key) == self.signals[key], f"{key}: count")
                self.check(bool(self.model.count(*key)) != bool(self.fifo[key]),
                           f"{key}: a live event needs a count or a waiter, not both")


def test_random_operations_keep_the_invariants(seed):
    traffic = Traffic(seed)
    for _ in range(20_000):
        traffic.step()
    statuses = {(op, status) for op in LockOp for status in LockStatus}
    impossible = {(ACQUIRE, LockStatus.NOT_OWNER), (RELEASE, BLOCKED), (RELEASE, FULL),
                  (WAIT, LockStatus.NOT_OWNER)}
    wanted = (statuses - impossible) | {("signal", None), ("signal", "accepted"), "bad signal",
                                        "released", "os"}
    idle = [path for path in wanted if not traffic.paths[path]]
    assert not idle, f"seed {seed}: the traffic never exercised {idle}"
