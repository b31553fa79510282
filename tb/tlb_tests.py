"""cocotb tests of the NI TLB (run them with ``smtni sim tlb``).

The knobs (``--param NAME=VALUE``) and their defaults are in :mod:`tb.testbenches`.
"""

import cocotb
from cocotb.triggers import ClockCycles

from rtl.layouts import TlbOp

from .component_tb import knobs, seed_for
from .runner import record_result
from .tlb_tb import PORTS, TLBTB

RW = {"local_read": 1, "remote_write": 1}


@cocotb.test()
@cocotb.parametrize(backpressure=[False, True])
async def random_sequences(dut, backpressure):
    """Fills, invalidations of every kind and lookups on both ports at once (hits, misses,
    faults, other ASIDs, wrong keys, lookups racing invalidations), against the model."""
    options = knobs("tlb")
    name = f"random_sequences/backpressure={backpressure}"
    tb = TLBTB(dut, seed=seed_for(name),
               ready_percent=options["ready_percent"] if backpressure else 100,
               idle_percent=options["idle_percent"] if backpressure else 0)
    await tb.start()
    # More pages than entries, so that fills replace entries; a few ASIDs and keys.
    asids = [tb.rng.randrange(1 << tb.asid_bits) for _ in range(4)]
    pages = [(tb.rng.choice(asids), tb.rng.getrandbits(36)) for _ in range(tb.entries * 3 // 2)]
    keys = [tb.rng.getrandbits(16) for _ in range(3)]
    for _ in range(options["lookups"] // 16):
        for _ in range(16):
            for port in PORTS:
                tb.random_lookup(port, pages, keys)
            if tb.rng.randrange(100) < options["command_percent"]:
                tb.random_command(pages, keys)
        await ClockCycles(dut.clk, 16)
    await tb.drain(timeout_cycles=200 * options["lookups"] + 1000)
    tb.check()
    figures = tb.figures()
    assert figures["answers"]["HIT"] and figures["answers"]["MISS"], figures["answers"]
    record_result(name, figures)


@cocotb.test()
async def rate_and_latency(dut):
    """Back-to-back lookups on both ports with the responses always taken: one lookup per cycle
    per port, each answered two cycles after its request (taken at the second edge after)."""
    tb = TLBTB(dut, seed=seed_for("rate_and_latency"))
    await tb.start()
    tb.command(TlbOp.FILL, asid=1, vpn=0x42, ppn=0x777, perm=RW, key=5)
    await ClockCycles(dut.clk, 8)
    for _ in range(64):
        for port in PORTS:
            tb.lookup(port, 1, 0x42 << 12, key=5)
    await tb.drain(timeout_cycles=1000)
    tb.check()
    figures = tb.figures()
    assert figures["latency_cycles"] == [2], figures["latency_cycles"]
    assert figures["answers"]["HIT"] == 128
    for port in PORTS:
        arrivals = tb.arrivals[port]
        assert arrivals == list(range(arrivals[0], arrivals[0] + 64)), f"{port}: {arrivals}"
    record_result("rate_and_latency", figures)


@cocotb.test()
async def replacement_when_full(dut):
    """Filling more pages than entries replaces entries round robin, oldest replaced first, as
    the model predicts; refilling a mapped page rewrites it in place."""
    tb = TLBTB(dut, seed=seed_for("replacement_when_full"))
    await tb.start()
    extra = tb.entries // 2 + 1
    for vpn in range(tb.entries + extra):
        tb.command(TlbOp.FILL, asid=0, vpn=vpn, ppn=vpn + 1, perm=RW)
    tb.command(TlbOp.FILL, asid=0, vpn=tb.entries + extra - 1, ppn=0xABCDE, perm=RW)
    await tb.drain(timeout_cycles=100 * tb.entries)
    for vpn in range(tb.entries + extra):
        tb.lookup("tx", 0, vpn << 12)
    await tb.drain(timeout_cycles=100 * tb.entries)
    tb.check()
    answers = tb.figures()["answers"]
    assert answers["HIT"] == tb.entries and answers["MISS"] == extra, answers
    assert tb.model.victim == extra % tb.entries
    record_result("replacement_when_full", tb.figures())
