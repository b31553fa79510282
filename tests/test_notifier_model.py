"""The Notifier's reference model follows every rule of its specification."""

import random
from collections import Counter, deque

import pytest

from behavioral.notifier import NotifierModel, NotifierResult
from rtl.layouts import (NOTIFIER_COUNTERS, HandlerReturnOp, LockSignal, NotifierCommandOp,
                         NotifyEvent, NotifyEventKind, NotifyMode, NotifyOsEvent, NotifyOsReason,
                         codec)

WRITE_ENDPOINT, WRITE_CONTEXT = NotifierCommandOp.WRITE_ENDPOINT, NotifierCommandOp.WRITE_CONTEXT
RETURN, EXIT = HandlerReturnOp.RETURN, HandlerReturnOp.EXIT
PC, STACK, LOCK = 0x4000_1000, 0x7fff_0000, 0x2000_0040


def endpoint(mode, thread=7, asid=2):
    return {"mode": mode, "asid": asid, "thread": thread, "lock": LOCK, "handler_pc": PC,
            "stack": STACK}


def contexts_holding(model, threads, evictable=()):
    """Fill the context table: context ``i`` holds ``threads[i]`` (None: not busy)."""
    for index, thread in enumerate(threads):
        model.command(WRITE_CONTEXT, index, context={
            "busy": int(thread is not None), "evictable": int(index in evictable),
            "thread": thread or 0})


def branch(context, entry, endpoint=1, thread=7):
    return NotifierResult(event={
        "kind": NotifyEventKind.BRANCH, "evict": 0, "context": context, "thread": thread,
        "evicted": 0, "endpoint": endpoint, "pc": PC, "sp": 0, "entry": entry})


def spawn(context, entry, evicted=None, endpoint=1, thread=7):
    return NotifierResult(event={
        "kind": NotifyEventKind.SPAWN, "evict": int(evicted is not None), "context": context,
        "thread": thread, "evicted": evicted or 0, "endpoint": endpoint, "pc": PC, "sp": STACK,
        "entry": entry})


def to_os(reason, entry, endpoint=1, thread=7):
    return NotifierResult(os_event={"reason": reason, "endpoint": endpoint, "thread": thread,
                                    "entry": entry})


def counted(**counts):
    return dict(dict.fromkeys(NOTIFIER_COUNTERS, 0), **counts)


def model_in(mode, threads=(None, 7, 7, None), **kwargs):
    model = NotifierModel(**kwargs)
    model.command(WRITE_ENDPOINT, 1, endpoint=endpoint(mode))
    contexts_holding(model, threads)
    return model


def snapshot(model):
    return ([model.endpoint(i) for i in range(8)], [model.context(i) for i in range(4)],
            [(model.in_handler(i), model.queued(i)) for i in range(8)], model.counters)


# Modes --------------------------------------------------------------------------------------------

def test_reset_state():
    model = NotifierModel()
    assert model.endpoint(7) == {"mode": NotifyMode.NONE, "asid": 0, "thread": 0, "lock": 0,
                                 "handler_pc": 0, "stack": 0}
    assert model.context(3) == {"busy": 0, "evictable": 0, "thread": 0}
    assert (model.in_handler(0), model.queued(0), model.counters) == (False, [], counted())


def test_mode_none_only_counts():
    model = model_in(NotifyMode.NONE)
    before = snapshot(model)
    assert model.completion(1, 0x80) == NotifierResult()
    assert snapshot(model)[:3] == before[:3] and model.counters == counted(none=1)


def test_mode_lock_signals_the_endpoint_lock():
    model = model_in(NotifyMode.LOCK)
    assert model.completion(1, 0x80) == NotifierResult(signal={"asid": 2, "addr": LOCK})
    assert model.counters == counted(lock=1)


def test_mode_branch_redirects_the_lowest_context_holding_the_thread():
    model = model_in(NotifyMode.BRANCH)
    assert model.completion(1, 0x80) == branch(1, 0x80)
    assert model.in_handler(1) and model.counters == counted(branch=1)


def test_mode_branch_to_a_thread_in_no_busy_context_goes_to_the_os():
    model = model_in(NotifyMode.BRANCH, threads=(None, None, None, None))
    model.command(WRITE_CONTEXT, 2, context={"busy": 0, "thread": 7})     # stale thread field
    assert model.completion(1, 0x80) == to_os(NotifyOsReason.NOT_RESIDENT, 0x80)
    assert not model.in_handler(1) and model.counters == counted(os=1)


def test_mode_spawn_takes_the_lowest_free_context():
    model = model_in(NotifyMode.SPAWN, threads=(3, None, 4, None))
    assert model.completion(1, 0x80) == spawn(1, 0x80)
    assert model.context(1) == {"busy": 1, "evictable": 0, "thread": 7}
    assert model.completion(1, 0x90) == spawn(3, 0x90)
    assert model.counters == counted(spawn=2) and not model.in_handler(1)


def test_mode_spawn_evicts_the_lowest_evictable_context():
    model = model_in(NotifyMode.SPAWN)
    contexts_holding(model, [3, 4, 5, 6], evictable={2, 3})
    assert model.completion(1, 0x80) == spawn(2, 0x80, evicted=5)
    assert model.context(2) == {"busy": 1, "evictable": 0, "thread": 7}
    assert model.completion(1, 0x90) == spawn(3, 0x90, evicted=6)
    assert model.counters == counted(evict=2)


def test_mode_spawn_with_no_free_or_evictable_context_goes_to_the_os():
    model = model_in(NotifyMode.SPAWN, threads=(3, 4, 5, 6))
    before = snapshot(model)
    assert model.completion(1, 0x80) == to_os(NotifyOsReason.NO_CONTEXT, 0x80)
    assert snapshot(model)[:3] == before[:3] and model.counters == counted(os=1)


def test_mode_interrupt_hands_every_arrival_to_the_os_even_with_the_thread_resident():
    model = model_in(NotifyMode.INTERRUPT)
    before = snapshot(model)
    assert model.completion(1, 0x80) == to_os(NotifyOsReason.INTERRUPT, 0x80)
    assert model.completion(1, 0x90) == to_os(NotifyOsReason.INTERRUPT, 0x90)
    assert snapshot(model)[:3] == before[:3] and model.counters == counted(interrupt=2)


def test_completion_of_an_endpoint_beyond_the_table_goes_to_the_os():
    model = NotifierModel(endpoints=4)
    assert model.completion(9, 0x80) == to_os(NotifyOsReason.BAD_ENDPOINT, 0x80, endpoint=9,
                                              thread=0)
    assert model.counters == counted(os=1)


# Handler queue and returns ------------------------------------------------------------------------

def test_arrivals_during_a_handler_queue_and_each_return_delivers_the_next():
    model = model_in(NotifyMode.BRANCH)
    model.completion(1, 0x80)
    for entry in (0x90, 0xa0, 0xb0):
        assert model.completion(1, entry) == NotifierResult()
    assert model.queued(1) == [0x90, 0xa0, 0xb0]
    assert model.handler_return(RETURN, 1, 2) == branch(2, 0x90)   # the RETURN's context
    assert model.handler_return(RETURN, 1, 1) == branch(1, 0xa0)
    assert model.handler_return(RETURN, 1, 1) == branch(1, 0xb0)
    assert model.in_handler(1)
    assert model.handler_return(RETURN, 1, 1) == NotifierResult()
    assert not model.in_handler(1)
    assert model.counters == counted(branch=4, queued=3)
    assert model.completion(1, 0xc0) == branch(1, 0xc0)


def test_an_arrival_to_a_full_queue_goes_to_the_os():
    model = model_in(NotifyMode.BRANCH, queue_depth=2)
    for entry in (0x80, 0x90, 0xa0):
        model.completion(1, entry)
    assert model.completion(1, 0xb0) == to_os(NotifyOsReason.QUEUE_OVERFLOW, 0xb0)
    assert model.queued(1) == [0x90, 0xa0]
    assert model.counters == counted(branch=1, queued=2, os=1)


def test_residency_is_checked_before_the_queue():
    model = model_in(NotifyMode.BRANCH)
    model.completion(1, 0x80)
    contexts_holding(model, [None] * 4)
    assert model.completion(1, 0x90) == to_os(NotifyOsReason.NOT_RESIDENT, 0x90)
    assert model.queued(1) == [] and model.in_handler(1)


@pytest.mark.parametrize("op, endpoint, context", [
    (RETURN, 1, 0), (RETURN, 12, 0), (EXIT, 1, 5)], ids=["not in handler", "bad endpoint",
                                                         "bad context"])
def test_bad_returns_are_counted_and_change_nothing_else(op, endpoint, context):
    model = model_in(NotifyMode.BRANCH, endpoints=8, contexts=4)
    before = snapshot(model)
    assert model.handler_return(op, endpoint, context) == NotifierResult()
    assert snapshot(model)[:3] == before[:3] and model.counters == counted(bad_returns=1)


def test_exit_frees_its_context_for_a_spawn():
    model = model_in(NotifyMode.SPAWN)
    contexts_holding(model, [3, 4, 5, 6], evictable={0, 1, 2, 3})
    model.command(WRITE_CONTEXT, 2, context={"busy": 1, "evictable": 1, "thread": 5})
    assert model.handler_return(EXIT, 0, 2) == NotifierResult()
    assert model.context(2) == {"busy": 0, "evictable": 0, "thread": 0}
    assert model.completion(1, 0x80) == spawn(2, 0x80)
    assert model.counters == counted(spawn=1)


def test_exit_leaves_the_handler_state_of_endpoints():
    model = model_in(NotifyMode.BRANCH, threads=(None, 7, None, None))
    model.completion(1, 0x80)
    model.completion(1, 0x90)
    model.handler_return(EXIT, 1, 1)
    assert model.in_handler(1) and model.queued(1) == [0x90]
    assert model.completion(1, 0xa0) == to_os(NotifyOsReason.NOT_RESIDENT, 0xa0)


# Commands -----------------------------------------------------------------------------------------

def test_write_endpoint_keeps_the_handler_state():
    model = model_in(NotifyMode.BRANCH)
    model.completion(1, 0x80)
    model.completion(1, 0x90)
    model.command(WRITE_ENDPOINT, 1, endpoint=endpoint(NotifyMode.LOCK, asid=5))
    assert model.endpoint(1)["mode"] is NotifyMode.LOCK
    assert model.in_handler(1) and model.queued(1) == [0x90]
    assert model.completion(1, 0xa0) == NotifierResult(signal={"asid": 5, "addr": LOCK})
    assert model.handler_return(RETURN, 1, 3) == branch(3, 0x90)


def test_commands_fill_left_out_fields_with_zero_and_convert_modes():
    model = NotifierModel()
    model.command(WRITE_ENDPOINT, 2, endpoint={"mode": 3, "thread": 4})
    model.command(WRITE_CONTEXT, 1)
    assert model.endpoint(2) == {"mode": NotifyMode.SPAWN, "asid": 0, "thread": 4, "lock": 0,
                                 "handler_pc": 0, "stack": 0}
    assert model.context(1) == {"busy": 0, "evictable": 0, "thread": 0}


@pytest.mark.parametrize("op, index", [(WRITE_ENDPOINT, 6), (WRITE_CONTEXT, 4)])
def test_a_command_beyond_its_table_changes_nothing(op, index):
    model = NotifierModel(endpoints=6, contexts=4)
    before = ([model.endpoint(i) for i in range(6)], [model.context(i) for i in range(4)])
    model.command(op, index, endpoint=endpoint(NotifyMode.LOCK), context={"busy": 1})
    assert ([model.endpoint(i) for i in range(6)], [model.context(i) for i in range(4)]) == before


# Counters, formats and checks ---------------------------------------------------------------------

def test_counters_add_up_to_the_completions():
    model = NotifierModel(queue_depth=1)
    for index, mode in enumerate(NotifyMode):
        model.command(WRITE_ENDPOINT, index, endpoint=endpoint(mode, thread=index))
    contexts_holding(model, [2, 9, 9, None])
    completions = [(e, 0x10 * n) for n in range(4) for e in (0, 1, 2, 3, 12)]
    for e, entry in completions:
        model.completion(e, entry)
    model.handler_return(RETURN, 2, 0)
    counters = model.counters
    paths = sum(counters[k] for k in ("none", "lock", "branch", "spawn", "evict", "os"))
    assert paths + sum(len(model.queued(e)) for e in range(8)) == len(completions)
    assert counters == counted(none=4, lock=4, branch=2, queued=1, spawn=1, os=9)


def test_outputs_compare_equal_to_unpacked_payloads():
    model = model_in(NotifyMode.BRANCH, threads=(None, None, None, None))
    got = [model.completion(1, 0x80).os_event]
    contexts_holding(model, [7])
    got.append(model.completion(1, 0x80).event)
    model.command(WRITE_ENDPOINT, 1, endpoint=endpoint(NotifyMode.LOCK))
    got.append(model.completion(1, 0x80).signal)
    want = [(NotifyOsEvent, dict(reason=NotifyOsReason.NOT_RESIDENT, endpoint=1, thread=7,
                                 entry=0x80)),
            (NotifyEvent, dict(kind=NotifyEventKind.BRANCH, thread=7, endpoint=1, pc=PC,
                               entry=0x80)),
            (LockSignal, dict(asid=2, addr=LOCK))]
    want = [codec(layout).unpack(codec(layout).pack(**fields)) for layout, fields in want]
    assert got == want
    assert all(type(g[k]) is type(w[k]) for g, w in zip(got, want) for k in w)


@pytest.mark.parametrize("kwargs, error", [
    (dict(endpoints=17), "endpoints 17 must be an integer 1 .. 16"),
    (dict(contexts=0), "contexts 0 must be an integer 1 .. 8"),
    (dict(queue_depth=True), "queue_depth True must be an integer 1 .. 16"),
])
def test_rejects_bad_parameters(kwargs, error):
    with pytest.raises(ValueError, match=error):
        NotifierModel(**kwargs)


@pytest.mark.parametrize("call, error", [
    (lambda m: m.completion(16, 0), "'endpoint' is 4 bits wide"),
    (lambda m: m.completion(0, 1 << 48), "'entry' is 48 bits wide"),
    (lambda m: m.handler_return(EXIT, 0, 8), "'context' is 3 bits wide"),
    (lambda m: m.handler_return(2, 0, 0), "2 is not a valid HandlerReturnOp"),
    (lambda m: m.command(WRITE_ENDPOINT, 8), "'index' is 3 bits wide"),
    (lambda m: m.command(WRITE_CONTEXT, 0, context={"busy": 2}), "'busy' is 1 bits wide"),
    (lambda m: m.command(WRITE_ENDPOINT, 0, endpoint={"pc": 0}), "unknown field 'pc'"),
    (lambda m: m.queued(8), "endpoint 8 is not in the table"),
])
def test_rejects_what_the_ports_cannot_carry(call, error):
    with pytest.raises(ValueError, match=error):
        call(NotifierModel())


# Randomized ---------------------------------------------------------------------------------------

class Traffic:
    """Random inputs to a small Notifier, checked against invariants the test keeps itself."""

    def __init__(self, seed):
        self.seed = seed
        self.rng = random.Random(seed)
        self.model = NotifierModel(endpoints=4, contexts=3, queue_depth=2)
        self.completions = 0
        self.waiting = [deque() for _ in range(4)]      # per endpoint, entries queued in order
        self.outputs = Counter()

    def check(self, condition, what):
        assert condition, f"seed {self.seed}: {what}"

    def step(self):
        action = self.rng.choices([self.completion, self.handler_return, self.command],
                                  [6, 3, 1])[0]
        before = self.model.counters
        result = action()
        self.check(sum(x is not None for x in (result.event, result.signal, result.os_event))
                   <= 1, f"{result} has more than one output")
        for name, value in zip(("event", "signal", "os_event"),
                               (result.event, result.signal, result.os_event)):
            self.outputs[name] += value is not None
        after = self.model.counters
        self.check(all(after[k] >= before[k] for k in NOTIFIER_COUNTERS), "a counter went down")
        self.check_invariants()

    #: What a completion may produce in each mode (None: an endpoint beyond the table).
    OUTCOMES = {None: {"os"}, NotifyMode.NONE: {"none"}, NotifyMode.LOCK: {"signal"},
                NotifyMode.BRANCH: {NotifyEventKind.BRANCH, "queued", "os"},
                NotifyMode.SPAWN: {NotifyEventKind.SPAWN, "os"}, NotifyMode.INTERRUPT: {"os"}}

    def completion(self):
        endpoint, entry = self.rng.randrange(5), self.rng.randrange(1 << 12)
        mode = self.model.endpoint(endpoint)["mode"] if endpoint < 4 else None
        self.completions += 1
        queued = self.model.counters["queued"]
        result = self.model.completion(endpoint, entry)
        if self.model.counters["queued"] > queued:
            self.waiting[endpoint].append(entry)
        outcome = ("os" if result.os_event else "signal" if result.signal else
                   result.event["kind"] if result.event else
                   "queued" if self.model.counters["queued"] > queued else "none")
        self.check(outcome in self.OUTCOMES[mode], f"{mode} completion gave {result}")
        if result.event is not None:
            held = self.model.context(result.event["context"])
            self.check(held["busy"] and held["thread"] == result.event["thread"],
                       f"{result.event} names context {held}")
        return result

    def handler_return(self):
        op = self.rng.choice(list(HandlerReturnOp))
        endpoint, context = self.rng.randrange(5), self.rng.randrange(4)
        result = self.model.handler_return(op, endpoint, context)
        if result.event is not None:
            want = self.waiting[endpoint].popleft()
            self.check((result.event["entry"], result.event["context"]) == (want, context),
                       f"RETURN delivered {result.event}, expected entry {want:#x}")
        return result

    def command(self):
        op, index = self.rng.choice(list(NotifierCommandOp)), self.rng.randrange(4)
        self.model.command(op, index, context={"busy": self.rng.randrange(2),
                                               "evictable": self.rng.randrange(2),
                                               "thread": self.rng.randrange(4)},
                           endpoint=endpoint(self.rng.choice(list(NotifyMode)),
                                             thread=self.rng.randrange(4)))
        return NotifierResult()

    def check_invariants(self):
        counters = self.model.counters
        paths = sum(counters[k] for k in ("none", "lock", "branch", "spawn", "evict", "os",
                                          "interrupt"))
        self.check(paths + sum(map(len, self.waiting)) == self.completions,
                   f"counters {counters} do not add up to {self.completions} completions")
        for e in range(4):
            self.check(self.model.queued(e) == list(self.waiting[e]), f"endpoint {e}: queue")
            self.check(self.model.in_handler(e) or not self.waiting[e],
                       f"endpoint {e}: entries queued with no handler running")


def test_random_inputs_keep_the_invariants(seed):
    traffic = Traffic(seed)
    for _ in range(20_000):
        traffic.step()
    counters = traffic.model.counters
    idle = [name for name in NOTIFIER_COUNTERS if not counters[name]]
    idle += [name for name in ("event", "signal", "os_event") if not traffic.outputs[name]]
    assert not idle, f"seed {seed}: the traffic never exercised {idle}"
