"""cocotb tests of the message buffer (run them with ``smtni sim msgbuf``).

The knobs (``--param NAME=VALUE``) and their defaults are in :mod:`tb.testbenches`.
"""

import cocotb
from cocotb.triggers import ClockCycles, with_timeout

from behavioral.memory import MemoryHierarchy
from rtl.layouts import LINE_BYTES, LINE_WORDS, MsgBufTxOp

from .component_tb import knobs, seed_for
from .msgbuf_tb import MessageBufferTB
from .runner import record_result

#: Where the tests' lines live (physical line addresses); each round of the measurement uses
#: lines no earlier round touched.
REGION_BASE = 0x10000
#: Small caches for the random test, so that lines move between L1, L2 and memory all the time.
SMALL_CACHES = dict(l1_bytes=1024, l1_ways=2, l2_bytes=4096, l2_ways=4, dram_latency_ns=20)


async def _core_thread(tb, region, count, rng):
    for _ in range(count):
        line = rng.choice(region)
        while tb.hierarchy.pending(line):        # the other thread's miss: one per line
            line = rng.choice(region)
        pa = line * LINE_BYTES + rng.randrange(LINE_WORDS) * 8
        if rng.random() < 0.4:
            await tb.access(pa, write=True, value=rng.getrandbits(64))
        else:
            await tb.access(pa)


async def _arrivals(tb, region, count, rng):
    for _ in range(count):
        while len(tb.rx_line) > 1:
            await ClockCycles(tb.dut.clk, 4)
        if rng.random() < 0.7:
            words = range(LINE_WORDS)
        else:
            first = rng.randrange(LINE_WORDS)
            words = range(first, rng.randrange(first, LINE_WORDS) + 1)
        tb.fill(rng.choice(region), {word: rng.getrandbits(64) for word in words})
        if rng.random() < 0.5:
            await ClockCycles(tb.dut.clk, rng.randrange(1, 16))


async def _ni_reads(tb, region, count, rng):
    for _ in range(count):
        await tb.ni_read_line(rng.choice(region))
        await ClockCycles(tb.dut.clk, rng.randrange(1, 24))


async def _sender(tb, count, rng):
    """Stage lines: write a line, read it back, free it; now and then, with every TX line
    allocated, operate on a line that is not the sender's (ignored, counted, answered zero)."""
    done = 0
    while done < count:
        while len(tb.tx_owned) < tb.tx_lines:
            await ClockCycles(tb.dut.clk, 2)
        if rng.random() < 0.1:
            stranger = rng.choice([line for line in range(tb.lines) if line not in tb.tx_owned])
            tb.tx(MsgBufTxOp.WRITE, stranger, rng.randrange(LINE_WORDS), rng.getrandbits(64))
            tb.tx(MsgBufTxOp.READ, stranger, 0, expect=0)
            tb.tx(MsgBufTxOp.FREE, stranger)
            tb.bad_tx_ops += 3
            done += 3
        else:
            line = tb.tx_owned.pop(rng.randrange(len(tb.tx_owned)))
            values = [rng.getrandbits(64) for _ in range(LINE_WORDS)]
            for word in rng.sample(range(LINE_WORDS), LINE_WORDS):
                tb.tx(MsgBufTxOp.WRITE, line, word, values[word])
            for word in range(LINE_WORDS):
                tb.tx(MsgBufTxOp.READ, line, word, expect=values[word])
            tb.tx(MsgBufTxOp.FREE, line)
            done += 2 * LINE_WORDS + 1
        await tb.tx_idle()


@cocotb.test()
@cocotb.parametrize(backpressure=[False, True])
async def random_operations(dut, backpressure):
    """Arriving lines (full and partial), core loads and stores through small caches, NI reads
    and TX staging at once, over four times as many lines as the buffer keeps: every read of anyone
    returns the last value written by anyone, write-backs go oldest first."""
    options = knobs("msgbuf")
    name = f"random_operations/backpressure={backpressure}"
    tb = MessageBufferTB(dut, seed=seed_for(name), hierarchy=MemoryHierarchy(**SMALL_CACHES),
                         ready_percent=options["ready_percent"] if backpressure else 100)
    await tb.start()
    # More lines than the buffer keeps and the L1 holds.
    region = [REGION_BASE + line for line in range(max(4 * (tb.lines - tb.tx_lines), 48))]
    operations = options["operations"] // 2
    shares = {"core": 0.55 * operations / 2, "fills": 0.25 * operations,
              "ni": 0.08 * operations, "tx": 0.12 * operations}
    rng = tb.rng
    workload = [_core_thread(tb, region, int(shares["core"]), rng),
                _core_thread(tb, region, int(shares["core"]), rng),
                _arrivals(tb, region, int(shares["fills"]), rng),
                _ni_reads(tb, region, int(shares["ni"]), rng),
                _sender(tb, int(shares["tx"]), rng)]

    async def everything():
        for task in [cocotb.start_soon(part) for part in workload]:
            await task

    # A design that stops answering fails the test instead of hanging it (a run takes about
    # 6 cycles per operation).
    await with_timeout(everything(), 100 * operations + 10_000, "ns")
    await tb.drain(timeout_cycles=10_000)
    # Every line, read as the NI would, holds what was last written to it.
    async def sweep():
        for line in region:
            await tb.ni_read_line(line)

    await with_timeout(sweep(), 100 * len(region), "ns")
    tb.check()
    counts = tb.counts
    assert int(dut.bad_tx_ops.value) == tb.bad_tx_ops, (int(dut.bad_tx_ops.value), tb.bad_tx_ops)
    exercised = ["mc_misses", "write_backs", "partial_fills", "coherence_dirty", "memory_reads",
                 "level_l1", "level_l2", "level_dram"]
    if tb.rx_lines:     # with no lines kept, a probe rarely finds one
        exercised += ["mc_hits", "ni_hits", "merges"]
    for kind in exercised:
        assert counts[kind], f"the run never exercised {kind}: {dict(counts)}"
    record_result(name, tb.figures())


@cocotb.test()
async def fill_rate(dut):
    """Full lines arriving back to back, one word per cycle, with write-backs once the buffer is
    full: the buffer takes a line every 8 cycles."""
    tb = MessageBufferTB(dut, seed=seed_for("fill_rate"))
    await tb.start()
    count = 2 * (tb.lines - tb.tx_lines) + 16
    for index in range(count):
        tb.fill(REGION_BASE + index, {word: index << 8 | word for word in range(LINE_WORDS)})
    await tb.drain(timeout_cycles=100 * count)
    tb.check()
    commits = tb.commits
    cycles_per_line = (commits[-1] - commits[0]) / (len(commits) - 1)
    figures = {**tb.figures(), "cycles_per_line": round(cycles_per_line, 3)}
    record_result("fill_rate", figures)
    assert cycles_per_line <= LINE_WORDS, figures


@cocotb.test()
async def message_cache_effect(dut):
    """A message of k lines arrives, then a thread reads it word by word, for k from
    ``min_message_lines`` to ``max_message_lines`` (1..32): DRAM
    and bus transfers and the thread's load latency. With the buffer keeping the lines
    (``rx_lines >= k``) reading a just-arrived line costs no DRAM read."""
    options = knobs("msgbuf")
    tb = MessageBufferTB(dut, seed=seed_for("message_cache_effect"))
    await tb.start()
    rows = []
    base = REGION_BASE
    for k in range(options["min_message_lines"], options["max_message_lines"] + 1):
        lines = range(base, base + k)
        base += k
        tb.hierarchy.reset_counters()
        for line in lines:
            tb.fill(line, {word: line << 8 | word for word in range(LINE_WORDS)})
        await tb.drain(timeout_cycles=1000 * k)
        await with_timeout(tb.write_backs_done(), 100 * k, "ns")
        arrival = dict(tb.hierarchy.counters)
        tb.hierarchy.reset_counters()
        first_loads, total = [], 0
        for line in lines:
            for word in range(LINE_WORDS):
                access = await with_timeout(tb.access(line * LINE_BYTES + word * 8), 1000, "ns")
                total += access.cycles
                if word == 0:
                    first_loads.append(access.cycles)
        reading = tb.hierarchy.counters
        rows.append({
            "k": k, "rx_lines": tb.rx_lines,
            "dram_reads": arrival["dram_reads"] + reading["dram_reads"],
            "dram_writes": arrival["dram_writes"] + reading["dram_writes"],
            "bus_transfers": arrival["bus_transfers"] + reading["bus_transfers"],
            "read_dram_reads": reading["dram_reads"],
            "first_load_cycles": round(sum(first_loads) / k, 1),
            "load_cycles": round(total / (k * LINE_WORDS), 2),
        })
        if tb.rx_lines >= k:
            assert reading["dram_reads"] == 0 and reading["msgbuf_hits"] == k, rows[-1]
    tb.check()
    record_result("message_cache_effect", {**tb.figures(), "rows": rows})
