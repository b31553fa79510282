"""cocotb tests of the Notifier (run them with ``smtni sim notifier``).

The knobs (``--param NAME=VALUE``) and their defaults are in :mod:`tb.testbenches`.
"""

import cocotb
from cocotb.triggers import ClockCycles

from rtl.layouts import ENDPOINT_BITS, HandlerReturnOp, NotifyMode

from .component_tb import knobs, seed_for
from .notifier_tb import NotifierTB
from .runner import record_result


def _random_endpoint(rng, threads):
    return dict(mode=rng.choice(list(NotifyMode)), asid=rng.randrange(4),
                thread=rng.choice(threads), lock=rng.getrandbits(46) << 2,
                handler_pc=rng.getrandbits(46) << 2, stack=rng.getrandbits(44) << 4)


@cocotb.test()
@cocotb.parametrize(backpressure=[False, True])
async def random_arrivals(dut, backpressure):
    """Random completions (every mode, unknown endpoints), handler returns and exits, and
    table rewrites, against the model: every event, signal and OS hand-off as predicted, the
    queues delivered in order, the counters equal."""
    options = knobs("notifier")
    name = f"random_arrivals/backpressure={backpressure}"
    tb = NotifierTB(dut, seed=seed_for(name),
                    ready_percent=options["ready_percent"] if backpressure else 100)
    await tb.start()
    rng, endpoints, contexts = tb.rng, tb.params["endpoints"], tb.params["contexts"]
    threads = list(range(contexts + 3))
    for index in range(endpoints):
        tb.write_endpoint(index, **_random_endpoint(rng, threads))
    for index in range(contexts):
        tb.write_context(index, busy=1, evictable=rng.random() < 0.5, thread=threads[index])
    while tb.counts["completions"] < options["arrivals"]:
        for _ in range(8):
            roll = rng.random()
            if roll < 0.6:
                endpoint = rng.randrange(endpoints + 1 if endpoints < 16 else endpoints)
                tb.complete(endpoint, rng.getrandbits(46) << 2)
            elif roll < 0.85:
                in_handler = [e for e in range(endpoints) if tb.model.in_handler(e)]
                endpoint = rng.choice(in_handler) if in_handler and rng.random() < 0.95 \
                    else rng.randrange(1 << ENDPOINT_BITS)
                tb.returned(HandlerReturnOp.RETURN, endpoint, rng.randrange(contexts))
            elif roll < 0.95:
                tb.returned(HandlerReturnOp.EXIT, context=rng.randrange(contexts))
            elif roll < 0.98:
                tb.write_context(rng.randrange(contexts), busy=rng.random() < 0.8,
                                 evictable=rng.random() < 0.5, thread=rng.choice(threads))
            else:
                tb.write_endpoint(rng.randrange(endpoints), **_random_endpoint(rng, threads))
        await ClockCycles(dut.clk, 8)
    await tb.drain(timeout_cycles=100 * tb.outstanding + 1000)
    tb.check()
    figures = tb.figures()
    idle = [path for path, count in figures["counters"].items() if not count]
    assert not idle, f"paths never taken: {idle}; counters {figures['counters']}"
    record_result(name, figures)
