"""cocotb tests of the Fabric (run them with ``smtni sim fabric``).

The knobs (``--param NAME=VALUE``) and their defaults are in :mod:`tb.testbenches`.
"""

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly

from .component_tb import knobs, seed_for
from .fabric_tb import FabricTB
from .runner import record_result


@cocotb.test()
@cocotb.parametrize(backpressure=[False, True])
async def random_traffic(dut, backpressure):
    """Every input sends random messages to every node (and some to no node), with random
    bubbles and, optionally, random output backpressure: each message arrives once, whole,
    contiguous, in order per (source, destination); dropped ones are counted."""
    options = knobs("fabric")
    name = f"random_traffic/backpressure={backpressure}"
    tb = FabricTB(dut, seed=seed_for(name),
                  ready_percent=options["ready_percent"] if backpressure else 100,
                  idle_percent=options["idle_percent"] if backpressure else 0)
    await tb.start()
    for src in range(tb.nodes):
        for _ in range(options["messages"]):
            tb.send(src, tb.random_message(src, max_payload_bytes=options["max_payload_bytes"],
                                           drop_percent=options["drop_percent"]))
    flits = options["messages"] * (options["max_payload_bytes"] // 8 + 4) * tb.nodes
    await tb.drain(timeout_cycles=20 * flits * tb.cycles_per_flit + 1000)
    tb.check()
    figures = tb.figures()
    figures["mismatches"] = 0
    record_result(name, figures)


@cocotb.test()
async def full_contention(dut):
    """Every input sends to node 0 at once: round robin serves each waiting input within
    ``nodes`` messages."""
    options = knobs("fabric")
    tb = FabricTB(dut, seed=seed_for("full_contention"))
    await tb.start()
    per_input = max(4, options["messages"] // 4)
    for src in range(tb.nodes):
        for _ in range(per_input):
            tb.send(src, tb.message(src, 0, 8 * tb.rng.randrange(4)))
    await tb.drain(timeout_cycles=40 * per_input * tb.nodes * tb.cycles_per_flit + 1000)
    tb.check()
    order = tb.deliveries[0]
    # While every input still has messages waiting, each is served within `nodes` messages.
    saturated = min(len(order), per_input * tb.nodes - (tb.nodes - 1))
    worst = 0
    for src in range(tb.nodes):
        served = [index for index, s in enumerate(order[:saturated]) if s == src]
        gaps = [served[0]] + [b - a - 1 for a, b in zip(served, served[1:])]
        worst = max(worst, *gaps)
    assert worst <= tb.nodes - 1, f"an input waited {worst} messages (limit {tb.nodes - 1})"
    record_result("full_contention", {**tb.figures(), "worst_wait_messages": worst})


@cocotb.test()
async def no_contention_rate(dut):
    """Input i sends to node i+1 (a permutation), outputs always ready: each port carries one
    flit every ``cycles_per_flit`` cycles without a gap, and a first flit crosses in
    ``1 + link_latency`` cycles (target: at most 2 + link latency)."""
    options = knobs("fabric")
    tb = FabricTB(dut, seed=seed_for("no_contention_rate"))
    await tb.start()
    for src in range(tb.nodes):
        for _ in range(max(4, options["messages"] // 4)):
            tb.send(src, tb.message(src, (src + 1) % tb.nodes, options["max_payload_bytes"]))
    await tb.drain(timeout_cycles=10_000 * tb.cycles_per_flit)
    tb.check()
    for port, stats in enumerate(tb.outputs):
        span = stats.last_cycle - stats.first_cycle
        assert span == (stats.flits - 1) * tb.cycles_per_flit, (
            f"output {port}: {stats.flits} flits took {span + 1} cycles, "
            f"expected one per {tb.cycles_per_flit}")
    assert set(tb.latencies) == {1 + tb.link_latency}, f"latencies {sorted(set(tb.latencies))}"
    record_result("no_contention_rate", {**tb.figures(), "latency_cycles": 1 + tb.link_latency})


@cocotb.test()
async def woken_in_readonly(dut):
    """The stream port group, asleep, is woken from inside the ReadOnly phase with nothing to
    do (as a coroutine that reads settled values and then hands the group work may), and a
    message sent afterwards still arrives."""
    tb = FabricTB(dut, seed=seed_for("woken_in_readonly"))
    await tb.start()
    await ClockCycles(dut.clk, 4)
    await ReadOnly()
    tb.ports.wake()
    await ClockCycles(dut.clk, 4)
    tb.send(0, tb.message(0, 1, 16))
    await tb.drain(timeout_cycles=200)
    tb.check()
