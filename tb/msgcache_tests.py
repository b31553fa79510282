"""A cocotb measurement on the message buffer: what arriving messages cost a program whose working
set fills the L2 (``smtni experiment message-cache`` runs it; it is not one of the MessageBuffer
testbench's tests, ``smtni sim msgbuf``).

The knobs are the MessageBuffer testbench's (:mod:`tb.testbenches`): ``min_message_lines`` (the
message's lines), ``message_read_lines`` (the lines of each message the program reads, 0 for all),
``inject_into_l2`` (the buffer's write-backs go into the L2, as a cache-injecting NI's writes
would: with ``rx_lines = 0``, the baseline of a design without a message cache that delivers
into the cache hierarchy) and ``working_set_messages``.
"""

import cocotb
from cocotb.triggers import with_timeout

from behavioral.memory import MemoryHierarchy
from rtl.layouts import LINE_BYTES, LINE_WORDS

from .component_tb import knobs, seed_for
from .msgbuf_tb import MessageBufferTB
from .msgbuf_tests import REGION_BASE
from .runner import record_result

#: Caches small enough to walk a working set the size of the L2 after every message, in the
#: proportions of the node's (an L1 an eighth of the L2, 8 ways).
WORKING_SET_CACHES = dict(l1_bytes=2048, l1_ways=4, l2_bytes=16384, l2_ways=8)
#: The program's working set, from this physical line on: as many lines as the L2 holds.
WORKING_SET_BASE = 0x40000
#: The ring of message slots the messages arrive into, in turn: each slot's lines are reused.
RING_SLOTS = 2


@cocotb.test()
async def working_set_effect(dut):
    """A program walks its working set (a load of each line, as many lines as the L2 holds) until
    the L2 holds all of it; then ``working_set_messages`` messages of ``min_message_lines`` lines
    arrive one at a time into a ring of :data:`RING_SLOTS` slots, and after each the program
    reads the first ``message_read_lines`` lines of it word by word and walks its working set
    again. Per message after the ring's first turn: the walk's L2 misses (the lines of the
    working set the message cost it), DRAM reads and writes and bus transfers of the arrival,
    the read and the walk, the lines put into the L2 by injection, and the read's cycles per
    load."""
    options = knobs("msgbuf")
    size = options["min_message_lines"]
    read = min(options["message_read_lines"] or size, size)
    hierarchy = MemoryHierarchy(**WORKING_SET_CACHES,
                                inject_into_l2=bool(options["inject_into_l2"]))
    tb = MessageBufferTB(dut, seed=seed_for("working_set_effect"), hierarchy=hierarchy)
    await tb.start()
    l2 = hierarchy.l2
    working_set = range(WORKING_SET_BASE, WORKING_SET_BASE + l2.sets * l2.ways)

    async def walk():
        for line in working_set:
            await with_timeout(tb.access(line * LINE_BYTES), 1000, "ns")

    await walk()
    hierarchy.reset_counters()
    await walk()
    assert hierarchy.counters["l2_misses"] == 0, hierarchy.counters
    rows = []
    for number in range(options["working_set_messages"]):
        base = REGION_BASE + number % RING_SLOTS * size
        lines = range(base, base + size)
        hierarchy.reset_counters()
        for line in lines:
            tb.fill(line, {word: number << 16 | line << 8 | word for word in range(LINE_WORDS)})
        await tb.drain(timeout_cycles=1000 * size)
        await with_timeout(tb.write_backs_done(), 100 * size, "ns")
        load_cycles = 0
        for line in lines[:read]:
            for word in range(LINE_WORDS):
                access = await with_timeout(tb.access(line * LINE_BYTES + word * 8), 1000, "ns")
                load_cycles += access.cycles
        misses = hierarchy.counters["l2_misses"]
        await walk()
        counters = hierarchy.counters
        if number >= RING_SLOTS:
            rows.append({"working_set_misses": counters["l2_misses"] - misses,
                         **{name: counters[name] for name in
                            ("dram_reads", "dram_writes", "bus_transfers", "l2_injections")},
                         "load_cycles": round(load_cycles / (read * LINE_WORDS), 2)})
    tb.check()
    assert rows, "no message after the ring's first turn: give working_set_messages > 2"
    record_result("working_set_effect", {**tb.figures(), "read_lines": read, "rows": rows})
