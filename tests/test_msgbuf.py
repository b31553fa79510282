"""Unit tests of the message buffer (rtl/msgbuf.py) in the Amaranth simulator."""

import random

import pytest
from amaranth.hdl import Module, Shape, Value
from amaranth.lib.memory import Memory

from rtl.layouts import (FLIT_DATA_BITS, CohResponse, LineRequest, MsgBufTxOp, RxFillBeat,
                         RxLineRequest, WordBeat, codec, msgbuf_tx_command_layout)
from rtl.msgbuf import MessageBuffer, _WritePort
from rtl.params import silence_unused
from tests.sim import background, edges, run, stream_get, stream_put, tracer, transfer

FULL = 0xFF
MISS = [(0, 0, 1)]
# The top nibble of a test word says where it came from.
FILLED, REFILLED, DIRTY, MEMORY = 0xF, 0xA, 0xD, 0xE
A, B, C, D, E, F = 0x1000, 0x2345, 0x3ABC, 0x0042, 0x0ABCD, 0x3FFFFFF
# Every test's testbenches are done well before this many cycles.
DEADLINE = 600


def small_buffer(rx_lines=3):
    return MessageBuffer(lines=8, tx_lines=2, rx_lines=rx_lines)


def words_of(source, addr):
    """Return a line's 8 words, each naming its source, line address and position."""
    return [source << 56 | addr << 8 | word for word in range(8)]


def merged(under, over, mask):
    """Return the line holding ``over`` in the words of ``mask``, ``under`` elsewhere."""
    return [over[word] if mask >> word & 1 else under[word] for word in range(8)]


def hit(words):
    """Return the beats (hit, data, last) of a probe hitting a line that holds ``words``."""
    return [(1, data, int(word == 7)) for word, data in enumerate(words)]


def written(addr, words):
    """Return the beats (addr, data, last) of the write-back of ``words`` at ``addr``."""
    return [(addr, data, int(word == 7)) for word, data in enumerate(words)]


def written_back(dut):
    return transfer(dut.mem_write) & dut.mem_write.payload.last


async def ticks_until(ctx, condition):
    """Return how many clock edges pass until one at which ``condition`` holds."""
    ticks = 1
    while not (await ctx.tick().sample(condition))[2]:
        ticks += 1
    return ticks


async def serve(ctx, port):
    """Take one payload from ``port`` for a testbench that runs until the simulation's deadline:
    :func:`stream_get` waits with ``until``, which raises when its coroutine is closed there."""
    ctx.set(port.ready, 1)
    valid = False
    while not valid:
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
    ctx.set(port.ready, 0)
    return payload


async def put_line(ctx, port, codec, beats):
    """Send ``beats`` (dicts of fields) on ``port``, ``last`` set on the final one."""
    for index, fields in enumerate(beats):
        await stream_put(ctx, port, codec.pack(**fields, last=index == len(beats) - 1))


class Neighbours:
    """The buffer's surroundings: the core caches answer coherence requests (with the words of
    ``dirty[addr]``, else clean), memory answers reads (with the :data:`MEMORY` words of the
    line, ``memory_cycles`` after taking the read) and takes write-backs at once. Each records
    what the buffer asked of it."""

    def __init__(self, dut, dirty=None, *, memory_cycles=0):
        self.dut = dut
        self.dirty = dirty or {}
        self.memory_cycles = memory_cycles
        self.coherence, self.reads, self.writes = [], [], []

    @property
    def testbenches(self):
        return self.caches, self.memory_reads, self.memory_writes

    @background
    async def caches(self, ctx):
        while True:
            addr = (await serve(ctx, self.dut.coh_req)).addr
            self.coherence.append(addr)
            beats = [dict(dirty=1, data=data) for data in self.dirty.get(addr, ())]
            await put_line(ctx, self.dut.coh_resp, codec(CohResponse), beats or [{}])

    @background
    async def memory_reads(self, ctx):
        while True:
            addr = (await serve(ctx, self.dut.mem_read)).addr
            self.reads.append(addr)
            if self.memory_cycles:
                await ctx.tick().repeat(self.memory_cycles)
            await put_line(ctx, self.dut.mem_read_data, codec(WordBeat),
                           [dict(data=data) for data in words_of(MEMORY, addr)])

    @background
    async def memory_writes(self, ctx):
        while True:
            beat = await serve(ctx, self.dut.mem_write)
            self.writes.append((beat.addr, beat.data, beat.last))


async def announce(ctx, dut, addr, mask=FULL):
    await stream_put(ctx, dut.rx_line, codec(RxLineRequest).pack(addr=addr, words=mask))


async def send_fill(ctx, dut, words, mask=FULL):
    """Send the words of ``mask`` on ``rx_data``, in order."""
    await put_line(ctx, dut.rx_data, codec(RxFillBeat),
                   [dict(word=word, data=words[word]) for word in range(8) if mask >> word & 1])


async def fill(ctx, dut, addr, words, mask=FULL):
    await announce(ctx, dut, addr, mask)
    await send_fill(ctx, dut, words, mask)


async def probe(ctx, dut, port, addr):
    """Return the beats (hit, data, last) answering a probe of ``addr`` on ``port``
    (``"mc_lookup"`` or ``"ni_read"``)."""
    await stream_put(ctx, getattr(dut, port), codec(LineRequest).pack(addr=addr))
    answer = dut.mc_data if port == "mc_lookup" else dut.ni_data
    beats = []
    while not beats or not beats[-1][2]:
        beat = await stream_get(ctx, answer)
        beats.append((beat.hit, beat.data, beat.last))
    return beats


async def allocate(ctx, dut):
    return (await stream_get(ctx, dut.tx_alloc)).line


async def tx_command(ctx, dut, op, line, word=0, data=0):
    command = codec(msgbuf_tx_command_layout(dut.lines))
    await stream_put(ctx, dut.tx_cmd, command.pack(op=op, line=line, word=word, data=data))


async def tx_read(ctx, dut, line, word):
    """Return (data, last) of a READ of ``word`` of ``line``."""
    await tx_command(ctx, dut, MsgBufTxOp.READ, line, word)
    beat = await stream_get(ctx, dut.tx_data)
    return beat.data, beat.last


def test_tx_staging(seed):
    """Allocation, writes in any order, reads, freeing; operations on lines that are not TX."""
    rng = random.Random(seed)
    dut = small_buffer()
    neighbours = Neighbours(dut)
    staged = {line: [rng.getrandbits(64) for _ in range(8)] for line in (0, 1)}
    others = range(2, 8)
    results = {}

    async def bench(ctx):
        results["allocated"] = [await allocate(ctx, dut), await allocate(ctx, dut)]
        results["beyond_quota"] = ctx.get(dut.tx_alloc.valid)
        for line, word in rng.sample([(line, word) for line in staged for word in range(8)], 16):
            await tx_command(ctx, dut, MsgBufTxOp.WRITE, line, word, staged[line][word])
        results["read"] = {line: [await tx_read(ctx, dut, line, word) for word in range(8)]
                           for line in staged}
        await tx_command(ctx, dut, MsgBufTxOp.FREE, 0)
        results["read_freed"] = await tx_read(ctx, dut, 0, 7)
        results["reallocated"] = await allocate(ctx, dut)
        await fill(ctx, dut, A, words_of(FILLED, A))
        for line in others:
            await tx_command(ctx, dut, MsgBufTxOp.WRITE, line, 7, (1 << 64) - 1)
        results["read_others"] = [await tx_read(ctx, dut, line, 7) for line in others]
        for line in others:
            await tx_command(ctx, dut, MsgBufTxOp.FREE, line)
        results["bad_tx_ops"] = ctx.get(dut.bad_tx_ops)
        results["rx"] = await probe(ctx, dut, "ni_read", A)

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    expected = {
        "allocated": [0, 1], "beyond_quota": 0,
        "read": {line: [(data, int(word == 7)) for word, data in enumerate(words)]
                 for line, words in staged.items()},
        "read_freed": (0, 1), "reallocated": 0, "read_others": [(0, 1)] * len(others),
        "bad_tx_ops": 1 + 3 * len(others), "rx": hit(words_of(FILLED, A)),
    }
    assert results == expected, f"seed {seed}"


def test_full_fill_then_probes():
    """ni_read leaves a line; a mc_lookup hit hands it over, so the next probes miss."""
    dut = small_buffer()
    neighbours = Neighbours(dut)
    ports = ["ni_read", "ni_read", "mc_lookup", "mc_lookup", "ni_read"]
    answers = []

    async def bench(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A))
        answers.extend([await probe(ctx, dut, port, A) for port in ports])

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert answers == [hit(words_of(FILLED, A))] * 3 + [MISS] * 2
    assert (neighbours.coherence, neighbours.reads, neighbours.writes) == ([A], [], [])


@pytest.mark.parametrize("dirty", [False, True], ids=["clean", "dirty"])
def test_partial_fill(dirty):
    """Words 2..4 filled: the rest comes from a dirty cache line, else from memory."""
    mask = 0b0001_1100
    dut = small_buffer()
    neighbours = Neighbours(dut, {A: words_of(DIRTY, A)} if dirty else {})
    answers = []

    async def bench(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A), mask)
        answers.append(await probe(ctx, dut, "ni_read", A))

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    under = words_of(DIRTY if dirty else MEMORY, A)
    assert answers == [hit(merged(under, words_of(FILLED, A), mask))]
    assert (neighbours.coherence, neighbours.reads) == ([A], [] if dirty else [A])


#: Memory's latency in the tests of merges that arrive after the fill.
SLOW_MEMORY = 100
#: The words of an 8-byte message (at offset 24), of a 32-byte completion entry.
MESSAGE, COMPLETION = 0b0000_1000, 0b0000_1111


def merge_done(dut):
    return transfer(dut.mem_read_data) & dut.mem_read_data.payload.last


def fill_done(dut):
    return transfer(dut.rx_data) & dut.rx_data.payload.last


@pytest.mark.parametrize("mask", [MESSAGE, COMPLETION], ids=["message", "completion"])
def test_partial_fill_does_not_wait_for_memory(mask):
    """A partial line's words are taken from the cycle after its announcement, before the
    coherence answer, and the line's read from memory (which takes 100 cycles) goes out with
    that answer; an NI read offered meanwhile is taken the cycle after memory's last word, and
    finds memory's words merged under the fill's."""
    dut = small_buffer()
    neighbours = Neighbours(dut, memory_cycles=SLOW_MEMORY)
    log, answers = [], []

    async def bench(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A), mask)
        answers.append(await probe(ctx, dut, "ni_read", A))

    trace = tracer(log, announced=transfer(dut.rx_line), filled=fill_done(dut),
                   answered=transfer(dut.coh_resp), read=transfer(dut.mem_read),
                   merged=merge_done(dut), taken=transfer(dut.ni_read))
    run(dut, bench, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    announced, = edges(log, "announced")
    filled, = edges(log, "filled")
    answered, = edges(log, "answered")
    merge_edge, = edges(log, "merged")
    # A word per cycle from the cycle after the announcement; the read asked in the cycle of
    # the answer.
    assert filled - announced == bin(mask).count("1")
    assert edges(log, "read") == [answered]
    assert merge_edge - filled >= SLOW_MEMORY
    assert edges(log, "taken") == [merge_edge + 1]
    assert answers == [hit(merged(words_of(MEMORY, A), words_of(FILLED, A), mask))]
    assert (neighbours.coherence, neighbours.reads, neighbours.writes) == ([A], [A], [])


def test_probe_waits_for_the_merge():
    """A mc_lookup of a filled line whose merge is pending waits for the merge, then takes the
    complete line over."""
    dut = small_buffer()
    neighbours = Neighbours(dut, memory_cycles=SLOW_MEMORY)
    log, answers = [], []

    async def filler(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A), COMPLETION)

    async def prober(ctx):
        await ticks_until(ctx, fill_done(dut))
        answers.append(await probe(ctx, dut, "mc_lookup", A))
        answers.append(await probe(ctx, dut, "mc_lookup", A))

    trace = tracer(log, filled=fill_done(dut), merged=merge_done(dut),
                   offered=dut.mc_lookup.valid, taken=transfer(dut.mc_lookup),
                   answer=transfer(dut.mc_data))
    run(dut, filler, prober, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    filled, = edges(log, "filled")
    merge_edge, = edges(log, "merged")
    waited = list(range(filled + 1, merge_edge + 2))
    assert edges(log, "offered")[:len(waited)] == waited
    assert edges(log, "taken")[0] == merge_edge + 1
    assert edges(log, "answer")[:8] == list(range(merge_edge + 2, merge_edge + 10))
    assert answers == [hit(merged(words_of(MEMORY, A), words_of(FILLED, A), COMPLETION)),
                       MISS]


@pytest.mark.parametrize("port", ["ni_read", "mc_lookup"])
def test_two_partial_fills_while_the_merge_is_pending(port):
    """Two completion entries' worth of fills into one line, the second overlapping the first,
    both taken before memory answers (a probe offered between them waiting for the merge does not
    hold the second back): the line holds the second's words, then the first's, then memory's,
    with one coherence request and one memory read."""
    first, second = 0b0000_0111, 0b0011_0100
    dut = small_buffer()
    neighbours = Neighbours(dut, memory_cycles=SLOW_MEMORY)
    log, answers = [], []

    async def filler(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A), first)
        await ctx.tick().repeat(4)
        await fill(ctx, dut, A, words_of(REFILLED, A), second)

    async def prober(ctx):
        await ticks_until(ctx, fill_done(dut))
        answers.append(await probe(ctx, dut, port, A))

    trace = tracer(log, filled=fill_done(dut), merged=merge_done(dut))
    run(dut, filler, prober, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    merge_edge, = edges(log, "merged")
    assert all(filled < merge_edge - SLOW_MEMORY // 2 for filled in edges(log, "filled"))
    filled_words = merged(words_of(FILLED, A), words_of(REFILLED, A), second)
    assert answers == [hit(merged(words_of(MEMORY, A), filled_words, first | second))]
    assert (neighbours.coherence, neighbours.reads, neighbours.writes) == ([A], [A], [])


@pytest.mark.parametrize("lines, merges", [(16, 8), (32, 16)])
def test_merges_outstanding_at_most(lines, merges):
    """Partial lines keep arriving while memory takes 100 cycles (reads pipelined): ``merges``
    reads are outstanding, the next partial line's read waits for the first merge (its fill does
    not), and every line ends up merged."""
    dut = MessageBuffer(lines=lines, tx_lines=2, rx_lines=lines - 2, merges=merges)
    neighbours = Neighbours(dut)
    addrs = [A + index for index in range(merges + 2)]
    log, answers = [], []

    async def filler(ctx):
        for addr in addrs:
            await fill(ctx, dut, addr, words_of(FILLED, addr), MESSAGE)
        answers.extend([await probe(ctx, dut, "ni_read", addr) for addr in addrs])

    trace = tracer(log, filled=fill_done(dut), merged=merge_done(dut), read=transfer(dut.mem_read))
    run(dut, filler, *pipelined_memory(dut, SLOW_MEMORY), neighbours.caches, trace,
        deadline_cycles=DEADLINE)
    first_merge = edges(log, "merged")[0]
    assert sum(edge < first_merge for edge in edges(log, "read")) == merges
    assert sum(edge < first_merge for edge in edges(log, "filled")) == len(addrs)
    assert answers == [hit(merged(words_of(MEMORY, addr), words_of(FILLED, addr), MESSAGE))
                       for addr in addrs]


def test_memory_words_before_the_fill_words():
    """Memory's words merged before the fill's words arrive stay under them."""
    dut = small_buffer()
    neighbours = Neighbours(dut)
    answers = []

    async def bench(ctx):
        await announce(ctx, dut, A, COMPLETION)
        await ticks_until(ctx, merge_done(dut))
        await ctx.tick().repeat(4)
        await send_fill(ctx, dut, words_of(FILLED, A), COMPLETION)
        answers.append(await probe(ctx, dut, "ni_read", A))

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert answers == [hit(merged(words_of(MEMORY, A), words_of(FILLED, A), COMPLETION))]


def test_write_back_waits_for_the_merge():
    """With no lines kept, a partial line is written back the cycle after its merge, whole."""
    dut = small_buffer(rx_lines=0)
    neighbours = Neighbours(dut, memory_cycles=SLOW_MEMORY)
    log = []

    async def bench(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A), MESSAGE)
        await ticks_until(ctx, written_back(dut))

    trace = tracer(log, merged=merge_done(dut), written=transfer(dut.mem_write))
    run(dut, bench, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    merge_edge, = edges(log, "merged")
    assert edges(log, "written") == list(range(merge_edge + 2, merge_edge + 10))
    assert neighbours.writes == written(
        A, merged(words_of(MEMORY, A), words_of(FILLED, A), MESSAGE))


def test_fill_of_a_held_line_merges_without_coherence():
    mask = 0b1010_0101
    dut = small_buffer()
    neighbours = Neighbours(dut)
    answers = []

    async def bench(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A))
        await fill(ctx, dut, A, words_of(REFILLED, A), mask)
        answers.append(await probe(ctx, dut, "ni_read", A))

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert answers == [hit(merged(words_of(FILLED, A), words_of(REFILLED, A), mask))]
    assert (neighbours.coherence, neighbours.reads, neighbours.writes) == ([A], [], [])


def test_next_line_is_prepared_while_one_fills():
    """Announcements run ahead of the words: full lines take a word per cycle, and a line's
    memory and dirty words wait while the fill in progress has the write port."""
    mask = 0b0001_1100
    announced = {A: FULL, B: FULL, C: mask, D: mask}
    dut = small_buffer(rx_lines=4)
    neighbours = Neighbours(dut, {D: words_of(DIRTY, D)})
    log, answers = [], []

    async def announcer(ctx):
        for addr, words in announced.items():
            await announce(ctx, dut, addr, words)

    async def filler(ctx):
        for addr, words in announced.items():
            await send_fill(ctx, dut, words_of(FILLED, addr), words)
        answers.extend([await probe(ctx, dut, "ni_read", addr) for addr in announced])

    trace = tracer(log, word=transfer(dut.rx_data))
    run(dut, announcer, filler, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    first = edges(log, "word")[0]
    assert edges(log, "word")[:16] == list(range(first, first + 16))
    assert answers == [hit(words_of(FILLED, A)), hit(words_of(FILLED, B)),
                       hit(merged(words_of(MEMORY, C), words_of(FILLED, C), mask)),
                       hit(merged(words_of(DIRTY, D), words_of(FILLED, D), mask))]
    assert (neighbours.coherence, neighbours.reads, neighbours.writes) == ([A, B, C, D], [C], [])


def test_write_back_of_the_oldest_line():
    """Three lines kept: the fourth fill writes the first back, from the cycle after it; a line
    handed over leaves the middle of the age order."""
    dut = small_buffer(rx_lines=3)
    neighbours = Neighbours(dut)
    results = {}

    async def bench(ctx):
        for addr in (A, B, C, D):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        results["ticks"] = await ticks_until(ctx, written_back(dut))
        results["probes"] = [await probe(ctx, dut, port, addr) for port, addr in
                             (("mc_lookup", A), ("ni_read", B), ("mc_lookup", C), ("ni_read", D))]
        for addr in (E, F):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        await ticks_until(ctx, written_back(dut))
        results["held"] = [await probe(ctx, dut, "ni_read", addr) for addr in (B, D, E, F)]
        await ctx.tick().repeat(20)

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert results == {
        "ticks": 9,
        "probes": [MISS, hit(words_of(FILLED, B)), hit(words_of(FILLED, C)),
                   hit(words_of(FILLED, D))],
        "held": [MISS, *[hit(words_of(FILLED, addr)) for addr in (D, E, F)]],
    }
    assert neighbours.writes == written(A, words_of(FILLED, A)) + written(B, words_of(FILLED, B))


def test_no_lines_kept_writes_each_line_back_at_once():
    """Each line's write-back starts the cycle after its fill; a probe offered meanwhile waits
    and misses."""
    dut = small_buffer(rx_lines=0)
    neighbours = Neighbours(dut)
    results = []

    async def bench(ctx):
        for addr, port in ((A, "mc_lookup"), (B, "ni_read")):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
            ticks = await ticks_until(ctx, transfer(dut.mem_write))
            results.append((ticks, await probe(ctx, dut, port, addr)))

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert results == [(2, MISS), (2, MISS)]
    assert neighbours.writes == written(A, words_of(FILLED, A)) + written(B, words_of(FILLED, B))


def test_probe_waits_for_a_fill_after_coherence():
    """A mc_lookup offered once the coherence answer is in is taken the cycle after the fill's
    last word, and hits; until then, no answer. The line is released with its last word."""
    dut = small_buffer()
    neighbours = Neighbours(dut)
    coherence_done = transfer(dut.coh_resp) & dut.coh_resp.payload.last
    log, answers = [], []

    async def filler(ctx):
        await announce(ctx, dut, A)
        await ticks_until(ctx, coherence_done)
        await ctx.tick().repeat(6)
        await send_fill(ctx, dut, words_of(FILLED, A))

    async def prober(ctx):
        await ticks_until(ctx, coherence_done)
        answers.append(await probe(ctx, dut, "mc_lookup", A))

    trace = tracer(log, coherence=coherence_done, offered=dut.mc_lookup.valid,
                   taken=transfer(dut.mc_lookup), answer=dut.mc_data.valid,
                   filled=transfer(dut.rx_data) & dut.rx_data.payload.last, done=dut.rx_done)
    run(dut, filler, prober, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    coherence, = edges(log, "coherence")
    filled, = edges(log, "filled")
    assert edges(log, "done") == [filled]
    assert filled == coherence + 14
    assert edges(log, "offered") == list(range(coherence + 1, filled + 2))
    assert edges(log, "taken") == [filled + 1]
    assert edges(log, "answer")[0] == filled + 2
    assert answers == [hit(words_of(FILLED, A))]


def test_probe_hit_latency():
    """The first word is taken at the edge after the request's, the others on the next 7."""
    dut = small_buffer()
    neighbours = Neighbours(dut)
    log, answers = [], []

    async def bench(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A))
        answers.append(await probe(ctx, dut, "mc_lookup", A))

    trace = tracer(log, request=transfer(dut.mc_lookup), word=transfer(dut.mc_data))
    run(dut, bench, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    request, = edges(log, "request")
    assert edges(log, "word") == list(range(request + 1, request + 9))
    assert answers == [hit(words_of(FILLED, A))]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lines=3), ValueError, "lines must be between 4 and 256, not 3"),
    (dict(tx_lines=0), ValueError, "tx_lines must be between 1 and 62, not 0"),
    (dict(lines=8, tx_lines=7), ValueError, "tx_lines must be between 1 and 6, not 7"),
    (dict(lines=8, tx_lines=2, rx_lines=7), ValueError, "rx_lines must be between 0 and 6, not 7"),
    (dict(lines=8.0), TypeError, "lines must be an integer, not 8.0"),
    (dict(rx_lines=True), TypeError, "rx_lines must be an integer, not True"),
    (dict(merges=0), ValueError, "merges must be between 1 and 32, not 0"),
    (dict(merges=33), ValueError, "merges must be between 1 and 32, not 33"),
])
def test_rejects_bad_parameters(kwargs, error, message):
    with pytest.raises(error) as raised:
        MessageBuffer(**kwargs)
    assert str(raised.value) == message


def test_tx_quota_counts_the_allocations_taken_not_the_cycles_offered():
    dut = small_buffer()                                                  # tx_lines 2
    results = []

    async def bench(ctx):
        await ctx.tick().repeat(4)          # the allocation is offered, nobody takes it
        results.append(ctx.get(dut.tx_alloc.valid))
        results.append([await allocate(ctx, dut), await allocate(ctx, dut)])
        results.append(ctx.get(dut.tx_alloc.valid))

    run(dut, bench, deadline_cycles=DEADLINE)
    assert results == [1, [0, 1], 0]


def test_rx_never_takes_the_lines_of_the_tx_quota():
    """With TX holding its quota and RX keeping every line it may, a further arrival waits for a
    write-back instead of taking a line from TX."""
    dut = MessageBuffer(lines=8, tx_lines=2, rx_lines=6)
    neighbours = Neighbours(dut)
    results = {}

    async def bench(ctx):
        staged = {await allocate(ctx, dut): 0x5A00 + index for index in range(2)}
        for line, data in staged.items():
            await tx_command(ctx, dut, MsgBufTxOp.WRITE, line, 3, data)
        for addr in (A, B, C, D, E, F, 0x777):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        results["tx"] = {line: await tx_read(ctx, dut, line, 3) for line in staged}
        results["staged"] = {line: (data, 0) for line, data in staged.items()}
        results["newest"] = await probe(ctx, dut, "ni_read", 0x777)

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert results["tx"] == results["staged"]
    assert results["newest"] == hit(words_of(FILLED, 0x777))


def test_a_line_handed_over_from_the_middle_leaves_the_others_in_age_order():
    dut = small_buffer(rx_lines=3)
    neighbours = Neighbours(dut)

    async def bench(ctx):
        for addr in (A, B, C, D):                       # A is written back
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        await ticks_until(ctx, written_back(dut))
        await probe(ctx, dut, "mc_lookup", C)           # B, C, D: C leaves the middle
        for addr in (E, F, 0x777, 0x778):               # B, D and E are written back
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        await ctx.tick().repeat(40)

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert [addr for addr, _, last in neighbours.writes if last] == [A, B, D, E]


def test_tx_writes_take_turns_with_a_fill_streaming_in():
    dut = small_buffer()
    neighbours = Neighbours(dut)
    log = []

    async def rx(ctx):
        await announce(ctx, dut, A)
        await ctx.tick().until(transfer(dut.coh_resp))
        await send_fill(ctx, dut, words_of(FILLED, A))

    async def tx(ctx):
        line = await allocate(ctx, dut)
        await ctx.tick().until(transfer(dut.rx_data))
        for word in range(4):
            await tx_command(ctx, dut, MsgBufTxOp.WRITE, line, word, word)

    run(dut, rx, tx, *neighbours.testbenches,
        tracer(log, fill=transfer(dut.rx_data), write=transfer(dut.tx_cmd)),
        deadline_cycles=DEADLINE)
    fills, writes = edges(log, "fill"), edges(log, "write")
    assert len(fills) == 8 and len(writes) == 4
    assert writes[-1] < fills[-1], f"TX writes at {writes} waited for the fill at {fills}"


def drained(dut, neighbours, count):
    """Return whether memory has taken the last word of ``count`` write-backs."""
    return sum(last for _, _, last in neighbours.writes) >= count


@pytest.mark.parametrize("lines, tx_lines", [(8, 3), (9, 1)])
def test_every_rx_line_in_use_then_written_back_oldest_first(lines, tx_lines):
    """With memory taking no write-backs, RX fills all ``lines - tx_lines`` lines it may use and a
    further announcement waits; once memory takes them, every line goes out whole, oldest first,
    and the waiting announcement gets a line."""
    dut = MessageBuffer(lines=lines, tx_lines=tx_lines, rx_lines=0)
    neighbours = Neighbours(dut)
    addrs = [A + 0x100 * index for index in range(lines - tx_lines + 1)]
    memory_open = {"open": False}
    results = {}

    @background
    async def memory_writes(ctx):
        while not memory_open["open"]:
            await ctx.tick()
        await neighbours.memory_writes(ctx)

    async def bench(ctx):
        for addr in addrs[:-1]:
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        ctx.set(Value.cast(dut.rx_line.payload),
                codec(RxLineRequest).pack(addr=addrs[-1], words=FULL))
        ctx.set(dut.rx_line.valid, 1)
        results["taken while full"] = 0
        for _ in range(20):
            *_, taken = await ctx.tick().sample(transfer(dut.rx_line))
            results["taken while full"] |= taken
        memory_open["open"] = True
        await announce(ctx, dut, addrs[-1])
        await send_fill(ctx, dut, words_of(FILLED, addrs[-1]))
        while not drained(dut, neighbours, len(addrs)):
            await ctx.tick()

    run(dut, bench, neighbours.caches, neighbours.memory_reads, memory_writes,
        deadline_cycles=DEADLINE)
    assert results == {"taken while full": 0}
    assert neighbours.writes == [beat for addr in addrs
                                 for beat in written(addr, words_of(FILLED, addr))]


def test_default_parameters_and_counter_width():
    """64 lines, at most 16 staging sends, 48 kept for RX; ``bad_tx_ops`` is 16 bits."""
    dut = MessageBuffer()
    assert (dut.lines, dut.tx_lines, dut.rx_lines) == (64, 16, 48)
    assert Shape.cast(dut.signature.members["bad_tx_ops"].shape) == Shape(16)
    silence_unused(dut)


def test_bad_tx_ops_saturates():
    """``bad_tx_ops`` stops at 0xFFFF (started two short of it here)."""
    dut = small_buffer()
    counts = []

    async def bench(ctx):
        ctx.set(dut.bad_tx_ops, 0xFFFD)
        for _ in range(3):
            await tx_command(ctx, dut, MsgBufTxOp.FREE, 5)       # line 5 is not TX
            await ctx.tick()
            counts.append(ctx.get(dut.bad_tx_ops))

    run(dut, bench, deadline_cycles=DEADLINE)
    assert counts == [0xFFFE, 0xFFFF, 0xFFFF]


def test_keeping_every_line_writes_the_oldest_back_when_all_but_one_are_in_use():
    """``rx_lines = lines - tx_lines``: no write-back while four of the six RX lines are in use;
    the fifth line's announcement has the oldest written back, so that a sixth finds a line."""
    dut = small_buffer(rx_lines=6)
    neighbours = Neighbours(dut)
    results = {}

    async def bench(ctx):
        for addr in (A, B, C, D):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        await ctx.tick().repeat(20)
        results["four"] = list(neighbours.writes)
        await fill(ctx, dut, E, words_of(FILLED, E))
        await ctx.tick().repeat(20)
        results["five"] = list(neighbours.writes)

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert results == {"four": [], "five": written(A, words_of(FILLED, A))}


def test_an_ni_read_leaves_the_age_order_and_a_refilled_line_becomes_the_newest():
    """Two lines kept. After an NI read of the oldest line, A, it is still the first written
    back; B, filled again, goes back after C, which is newer than its first fill."""
    mask = 0b0011_0000
    dut = small_buffer(rx_lines=2)
    neighbours = Neighbours(dut)
    answers = []

    async def bench(ctx):
        for addr in (A, B):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        answers.append(await probe(ctx, dut, "ni_read", A))
        await fill(ctx, dut, C, words_of(FILLED, C))            # A, B, C: A goes
        await ticks_until(ctx, written_back(dut))
        await fill(ctx, dut, B, words_of(REFILLED, B), mask)    # C, B
        await fill(ctx, dut, D, words_of(FILLED, D))            # C, B, D: C goes
        await ticks_until(ctx, written_back(dut))
        await fill(ctx, dut, E, words_of(FILLED, E))            # B, D, E: B goes
        await ticks_until(ctx, written_back(dut))
        await ctx.tick().repeat(20)

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert answers == [hit(words_of(FILLED, A))]
    assert neighbours.writes == (
        written(A, words_of(FILLED, A)) + written(C, words_of(FILLED, C))
        + written(B, merged(words_of(FILLED, B), words_of(REFILLED, B), mask)))


def test_a_hit_taken_every_other_cycle_loses_no_word():
    """The words of a hit wait in the output while the prober is not ready: all 8, in order."""
    dut = small_buffer()
    neighbours = Neighbours(dut)
    beats = []

    async def bench(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A))
        await stream_put(ctx, dut.ni_read, codec(LineRequest).pack(addr=A))
        while not beats or not beats[-1][2]:
            ctx.set(dut.ni_data.ready, 0)
            await ctx.tick()
            beat = await stream_get(ctx, dut.ni_data)
            beats.append((beat.hit, beat.data, beat.last))

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert beats == hit(words_of(FILLED, A))


def test_an_announcement_of_a_line_being_filled_waits_for_the_fill():
    """A second announcement of A, offered while A's first fill is in progress (a word every
    third cycle), is taken only after that fill's last word; the line then holds both fills."""
    mask = 0b1100_0000
    dut = small_buffer()
    neighbours = Neighbours(dut)
    log, answers = [], []

    async def bench(ctx):
        await fill(ctx, dut, B, words_of(FILLED, B))
        await announce(ctx, dut, A)
        ctx.set(Value.cast(dut.rx_line.payload), codec(RxLineRequest).pack(addr=A, words=mask))
        ctx.set(dut.rx_line.valid, 1)
        for word, data in enumerate(words_of(FILLED, A)):
            await ctx.tick().repeat(2)
            await stream_put(ctx, dut.rx_data,
                             codec(RxFillBeat).pack(word=word, data=data, last=word == 7))
        await ctx.tick().until(dut.rx_line.ready)
        ctx.set(dut.rx_line.valid, 0)
        await send_fill(ctx, dut, words_of(REFILLED, A), mask)
        answers.append(await probe(ctx, dut, "ni_read", A))

    trace = tracer(log, announced=transfer(dut.rx_line), filled=fill_done(dut))
    run(dut, bench, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    announced, filled = edges(log, "announced"), edges(log, "filled")
    assert len(announced) == len(filled) == 3
    assert filled[1] < announced[2]
    assert answers == [hit(merged(words_of(FILLED, A), words_of(REFILLED, A), mask))]


def test_a_probe_of_a_line_filled_again_waits_for_that_fill():
    """A probe offered once A's second announcement is taken (its words a cycle apart, every
    third cycle) is taken after the second fill's last word and sees it."""
    mask = 0b0000_0110
    dut = small_buffer()
    neighbours = Neighbours(dut)
    log, answers = [], []

    async def filler(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A))
        await announce(ctx, dut, A, mask)
        for word in (1, 2):
            await ctx.tick().repeat(2)
            await stream_put(ctx, dut.rx_data, codec(RxFillBeat).pack(
                word=word, data=words_of(REFILLED, A)[word], last=word == 2))

    async def prober(ctx):
        await ticks_until(ctx, transfer(dut.rx_line))
        await ticks_until(ctx, transfer(dut.rx_line))
        answers.append(await probe(ctx, dut, "ni_read", A))

    trace = tracer(log, filled=fill_done(dut), taken=transfer(dut.ni_read))
    run(dut, filler, prober, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert edges(log, "filled")[1] < edges(log, "taken")[0]
    assert answers == [hit(merged(words_of(FILLED, A), words_of(REFILLED, A), mask))]


def test_an_announcement_of_a_line_being_read_waits_for_the_read():
    """An NI read of A taken a word every third cycle: an announcement of A offered meanwhile is
    taken only once the read's last word is, the read returns the words from before, and a
    later probe the new ones."""
    mask = 0b0000_0011
    dut = small_buffer()
    neighbours = Neighbours(dut)
    log, beats, answers = [], [], []

    async def reader(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A))
        await stream_put(ctx, dut.ni_read, codec(LineRequest).pack(addr=A))
        while not beats or not beats[-1][2]:
            ctx.set(dut.ni_data.ready, 0)
            await ctx.tick().repeat(2)
            beat = await stream_get(ctx, dut.ni_data)
            beats.append((beat.hit, beat.data, beat.last))

    async def refiller(ctx):
        await ticks_until(ctx, transfer(dut.ni_read))
        await fill(ctx, dut, A, words_of(REFILLED, A), mask)
        answers.append(await probe(ctx, dut, "mc_lookup", A))

    trace = tracer(log, announced=transfer(dut.rx_line),
                   read_done=transfer(dut.ni_data) & dut.ni_data.payload.last)
    run(dut, reader, refiller, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    read_done, = edges(log, "read_done")
    assert edges(log, "announced")[1] > read_done
    assert beats == hit(words_of(FILLED, A))
    assert answers == [hit(merged(words_of(FILLED, A), words_of(REFILLED, A), mask))]


def test_a_probe_of_a_released_line_waits_for_the_rest_of_its_dirty_answer():
    """A partial fill of A, which a cache holds dirty: A is released (``rx_done``) at its
    answer's first beat, and a lookup offered then is taken only once the answer's last beat is
    in, and finds the dirty words under the fill's."""
    dut = small_buffer()
    caches, _ = pipelined_caches(dut, 10, {A: words_of(DIRTY, A)})
    neighbours = Neighbours(dut)
    log, answers = [], []

    async def bench(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A), COMPLETION)
        await ctx.tick().until(dut.rx_done)
        answers.append(await probe(ctx, dut, "mc_lookup", A))

    trace = tracer(log, beat=transfer(dut.coh_resp), done=dut.rx_done,
                   offered=dut.mc_lookup.valid, taken=transfer(dut.mc_lookup))
    run(dut, bench, *caches, neighbours.memory_reads, neighbours.memory_writes, trace,
        deadline_cycles=DEADLINE)
    beats = edges(log, "beat")
    assert len(beats) == 8 and edges(log, "done") == [beats[0]]
    assert edges(log, "offered")[0] < beats[-1]
    assert edges(log, "taken") == [beats[-1] + 1]
    assert answers == [hit(merged(words_of(DIRTY, A), words_of(FILLED, A), COMPLETION))]


def test_a_probe_taken_before_the_coherence_request_misses():
    """While the caches do not take A's coherence request, a probe of A is taken and misses (the
    caches still own the line); after the fill, a probe hits."""
    dut = small_buffer()
    neighbours = Neighbours(dut)
    caches_open = {"open": False}
    log, answers = [], []

    @background
    async def caches(ctx):
        while not caches_open["open"]:
            await ctx.tick()
        await neighbours.caches(ctx)

    async def prober(ctx):
        await announce(ctx, dut, A)
        answers.append(await probe(ctx, dut, "ni_read", A))
        await ctx.tick().repeat(30)
        caches_open["open"] = True
        await send_fill(ctx, dut, words_of(FILLED, A))
        answers.append(await probe(ctx, dut, "ni_read", A))

    trace = tracer(log, coherence=transfer(dut.coh_req), taken=transfer(dut.ni_read))
    run(dut, prober, caches, neighbours.memory_reads, neighbours.memory_writes, trace,
        deadline_cycles=DEADLINE)
    coherence, = edges(log, "coherence")
    assert edges(log, "taken")[0] < coherence
    assert answers == [MISS, hit(words_of(FILLED, A))]


@pytest.mark.parametrize("port", ["mc_lookup", "ni_read"])
def test_a_probe_decided_as_its_line_is_allocated_and_asked_waits_for_the_fill(port):
    """A probe of A offered a cycle after A's announcement is decided in the cycle after the one
    A is allocated in, when A's tag is new and its coherence request has gone out with the
    announcement (the caches always take it): it must not miss (the caches have given A up,
    memory holds old words), but wait until the fill is in, and hit with the fill's words."""
    dut = small_buffer()
    neighbours = Neighbours(dut)
    log, answers = [], []

    async def announcer(ctx):
        await announce(ctx, dut, A)
        await ctx.tick().repeat(5)
        await send_fill(ctx, dut, words_of(FILLED, A))

    async def prober(ctx):
        await ctx.tick()
        answers.append(await probe(ctx, dut, port, A))

    trace = tracer(log, announced=transfer(dut.rx_line), coherence=transfer(dut.coh_req),
                   taken=transfer(getattr(dut, port)), filled=fill_done(dut))
    run(dut, announcer, prober, neighbours.caches, neighbours.memory_reads,
        neighbours.memory_writes, trace, deadline_cycles=DEADLINE)
    announced, = edges(log, "announced")
    assert edges(log, "coherence") == [announced]
    assert edges(log, "taken")[0] > announced
    assert answers == [hit(words_of(FILLED, A))]


@pytest.mark.parametrize("delay", [0, 1, 2])
def test_a_probe_next_to_an_allocation_still_hits_the_other_lines(delay):
    """A probe of A offered ``delay`` cycles after B's announcement (B gets a line, its tag
    written) hits A."""
    dut = small_buffer()
    neighbours = Neighbours(dut)
    answers = []

    async def announcer(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A))
        await fill(ctx, dut, B, words_of(FILLED, B))

    async def prober(ctx):
        await ticks_until(ctx, fill_done(dut))
        await ticks_until(ctx, dut.rx_line.valid)
        for _ in range(delay):
            await ctx.tick()
        answers.append(await probe(ctx, dut, "ni_read", A))

    run(dut, announcer, prober, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert answers == [hit(words_of(FILLED, A))]


def pipelined(request, answer, latency, answer_codec, beats_of):
    """Return the testbenches of a neighbour that takes every ``request`` at once and answers
    each ``latency`` cycles after taking it, in order, with the beats ``beats_of(addr)`` on
    ``answer`` (:class:`Neighbours` takes one at a time); and the list of the addresses it
    takes."""
    asked, due, clock = [], [], {"edge": 0}

    @background
    async def requests(ctx):
        ctx.set(request.ready, 1)
        async for _, _, taken, addr in ctx.tick().sample(transfer(request), request.payload.addr):
            clock["edge"] += 1
            if taken:
                asked.append(addr)
                due.append((clock["edge"] + latency, addr))

    @background
    async def answers(ctx):
        while True:
            await ctx.tick()
            if due and due[0][0] <= clock["edge"]:
                _, addr = due.pop(0)
                await put_line(ctx, answer, answer_codec, beats_of(addr))

    return (requests, answers), asked


def pipelined_memory(dut, latency):
    """Return the testbenches of a memory that answers every read ``latency`` cycles after
    taking it, in order."""
    testbenches, _ = pipelined(dut.mem_read, dut.mem_read_data, latency, codec(WordBeat),
                               lambda addr: [dict(data=data) for data in words_of(MEMORY, addr)])
    return testbenches


def pipelined_caches(dut, latency, dirty=None):
    """Return the testbenches of core caches that answer every coherence request ``latency``
    cycles after taking it, in order (with the words of ``dirty[addr]``, else clean), and the
    list of the addresses asked."""
    dirty = dirty or {}
    return pipelined(dut.coh_req, dut.coh_resp, latency, codec(CohResponse),
                     lambda addr: [dict(dirty=1, data=data) for data in dirty.get(addr, ())]
                     or [{}])


def test_lines_in_flight_overlap_their_coherence_round_trips():
    """With caches that take 40 cycles to answer, IN_FLIGHT lines' coherence requests each go out
    in the cycle of the line's announcement (no request waits before it), and their words are
    all taken before the first answer; the next announcement waits for the first line to
    complete. ``rx_done`` marks each line's release, in order, at
    the later of its last word and its answer's first beat; each line then reads as filled (a
    dirty copy under a partial fill)."""
    flight = MessageBuffer.IN_FLIGHT
    addrs = [A + index for index in range(flight + 1)]
    masks = {addr: FULL for addr in addrs}
    masks[addrs[1]] = MESSAGE
    dut = MessageBuffer(lines=16, tx_lines=2, rx_lines=14)
    caches, asked = pipelined_caches(dut, 40, {addrs[1]: words_of(DIRTY, addrs[1])})
    neighbours = Neighbours(dut)
    log, answers = [], []

    async def announcer(ctx):
        for addr in addrs:
            await announce(ctx, dut, addr, masks[addr])

    async def filler(ctx):
        for addr in addrs:
            await send_fill(ctx, dut, words_of(FILLED, addr), masks[addr])
        for _ in addrs[len(edges(log, "done")):]:
            await ctx.tick().until(dut.rx_done)
        answers.extend([await probe(ctx, dut, "ni_read", addr) for addr in addrs])

    trace = tracer(log, announced=transfer(dut.rx_line), asked=transfer(dut.coh_req),
                   beat=transfer(dut.coh_resp),
                   answered=transfer(dut.coh_resp) & dut.coh_resp.payload.last,
                   filled=fill_done(dut), done=dut.rx_done)
    run(dut, announcer, filler, *caches, neighbours.memory_reads, neighbours.memory_writes,
        trace, deadline_cycles=DEADLINE)
    announced, answered, filled = (edges(log, name) for name in ("announced", "answered",
                                                                  "filled"))
    assert edges(log, "asked") == announced
    assert all(edge < answered[0] for edge in filled[:flight])
    assert announced[flight] > answered[0]
    beats = edges(log, "beat")
    begun = [beat for index, beat in enumerate(beats)
             if index == 0 or beats[index - 1] in answered]
    assert len(begun) == len(addrs) and begun[1] < answered[1] - 6
    assert edges(log, "done") == [max(pair) for pair in zip(begun, filled)]
    assert asked == addrs
    assert answers == [hit(merged(words_of(DIRTY, addr), words_of(FILLED, addr), masks[addr]))
                       for addr in addrs]


def test_a_line_filled_again_while_every_rx_line_merges():
    """Five RX lines, five partial lines whose reads are all outstanding; A, filled again
    meanwhile, keeps both fills' words, the others only theirs: memory's words go everywhere
    else, and each line is written back whole once merged, A last (it is the newest)."""
    second = 0b0011_0000
    dut = MessageBuffer(lines=8, tx_lines=3, rx_lines=0)
    neighbours = Neighbours(dut)
    addrs = [A, B, C, D, E]

    async def bench(ctx):
        for addr in addrs:
            await fill(ctx, dut, addr, words_of(FILLED, addr), MESSAGE)
        await fill(ctx, dut, A, words_of(REFILLED, A), second)
        while not drained(dut, neighbours, len(addrs)):
            await ctx.tick()

    run(dut, bench, neighbours.caches, neighbours.memory_writes,
        *pipelined_memory(dut, SLOW_MEMORY), deadline_cycles=DEADLINE)
    lines = {addr: merged(words_of(MEMORY, addr), words_of(FILLED, addr), MESSAGE)
             for addr in addrs}
    lines[A] = merged(lines[A], words_of(REFILLED, A), second)
    assert neighbours.writes == [beat for addr in (B, C, D, E, A)
                                 for beat in written(addr, lines[addr])]


@pytest.mark.parametrize("port", ["ni_read", "mc_lookup"])
def test_filling_a_held_line_again_while_another_is_probed(port):
    """While B's hit streams out slowly, A (held) is announced again: taken during an NI read,
    which leaves B; after a mc_lookup, which frees B, only once B's last word is taken."""
    mask = 0b0000_0001
    dut = small_buffer()
    neighbours = Neighbours(dut)
    answer = dut.ni_data if port == "ni_read" else dut.mc_data
    log, beats, answers = [], [], []

    async def prober(ctx):
        for addr in (A, B):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        await stream_put(ctx, getattr(dut, port), codec(LineRequest).pack(addr=B))
        while not beats or not beats[-1][2]:
            ctx.set(answer.ready, 0)
            await ctx.tick().repeat(3)
            beat = await stream_get(ctx, answer)
            beats.append((beat.hit, beat.data, beat.last))

    async def refiller(ctx):
        await ticks_until(ctx, transfer(getattr(dut, port)))
        await fill(ctx, dut, A, words_of(REFILLED, A), mask)
        answers.append(await probe(ctx, dut, "ni_read", A))

    trace = tracer(log, announced=transfer(dut.rx_line),
                   probe_done=transfer(answer) & answer.payload.last)
    run(dut, prober, refiller, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    probe_done = edges(log, "probe_done")[0]
    announced = edges(log, "announced")[2]
    assert announced < probe_done if port == "ni_read" else announced > probe_done
    assert beats == hit(words_of(FILLED, B))
    assert answers == [hit(merged(words_of(FILLED, A), words_of(REFILLED, A), mask))]


def test_filling_a_held_line_again_waits_for_a_cycle_when_a_probe_may_start():
    """A probe of B and A's second announcement offered together: the reader may start the
    probe's job, so the line is not reused in that cycle, only at the next edge."""
    mask = 0b1000_0000
    dut = small_buffer()
    neighbours = Neighbours(dut)
    log, answers = [], []

    async def bench(ctx):
        for addr in (A, B):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        ctx.set(Value.cast(dut.ni_read.payload), codec(LineRequest).pack(addr=B))
        ctx.set(dut.ni_read.valid, 1)
        await fill(ctx, dut, A, words_of(REFILLED, A), mask)
        answers.append(await probe(ctx, dut, "mc_lookup", A))

    @background
    async def ni_answer(ctx):
        ctx.set(dut.ni_data.ready, 1)
        await ctx.tick().until(transfer(dut.ni_read))
        ctx.set(dut.ni_read.valid, 0)

    trace = tracer(log, announced=transfer(dut.rx_line), probed=transfer(dut.ni_read))
    run(dut, bench, ni_answer, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    probed, = edges(log, "probed")
    assert edges(log, "announced")[2] == probed + 1
    assert answers == [hit(merged(words_of(FILLED, A), words_of(REFILLED, A), mask))]


def test_a_lookup_goes_before_a_write_back_no_announcement_waits_for():
    """With no lines kept, A's write-back stalls in memory while B's becomes due and a mc_lookup
    waits: when A's is done, the lookup goes first, then B's write-back."""
    dut = small_buffer(rx_lines=0)
    neighbours = Neighbours(dut)
    memory_open = {"open": False}
    log, answers = [], []

    @background
    async def memory_writes(ctx):
        while not memory_open["open"]:
            await ctx.tick()
        await neighbours.memory_writes(ctx)

    async def bench(ctx):
        for addr in (A, B):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        ctx.set(Value.cast(dut.mc_lookup.payload), codec(LineRequest).pack(addr=C))
        ctx.set(dut.mc_lookup.valid, 1)
        await ctx.tick().repeat(10)
        memory_open["open"] = True
        await ctx.tick().until(dut.mc_lookup.ready)
        ctx.set(dut.mc_lookup.valid, 0)
        answers.append((await stream_get(ctx, dut.mc_data)).hit)
        while not drained(dut, neighbours, 2):
            await ctx.tick()

    trace = tracer(log, looked_up=transfer(dut.mc_lookup),
                   b_written=transfer(dut.mem_write) & (dut.mem_write.payload.addr == B))
    run(dut, bench, neighbours.caches, neighbours.memory_reads, memory_writes, trace,
        deadline_cycles=DEADLINE)
    looked_up, = edges(log, "looked_up")
    assert looked_up < edges(log, "b_written")[0]
    assert answers == [0]
    assert neighbours.writes == written(A, words_of(FILLED, A)) + written(B, words_of(FILLED, B))


@pytest.mark.parametrize("gap", range(6))
def test_lines_filled_while_others_are_written_back(gap):
    """No lines kept and ``gap`` idle cycles between fills, so that a fill's last word meets a
    write-back's at some point: every line written back once, whole, in order."""
    dut = small_buffer(rx_lines=0)
    neighbours = Neighbours(dut)
    addrs = [A + index for index in range(5)]

    async def bench(ctx):
        for addr in addrs:
            await fill(ctx, dut, addr, words_of(FILLED, addr))
            for _ in range(gap):
                await ctx.tick()
        while not drained(dut, neighbours, len(addrs)):
            await ctx.tick()

    run(dut, bench, *neighbours.testbenches, deadline_cycles=DEADLINE)
    assert neighbours.writes == [beat for addr in addrs
                                 for beat in written(addr, words_of(FILLED, addr))]


@pytest.mark.parametrize("latency", range(0, 24, 2))
def test_partial_lines_merged_whatever_the_memory_latency(latency):
    """Partial lines back to back, memory answering each read ``latency`` cycles after taking it
    (reads pipelined), so that a read is queued as another merge ends at some point: every line
    written back once merged, in order."""
    dut = small_buffer(rx_lines=0)
    neighbours = Neighbours(dut)
    addrs = [A + index for index in range(8)]

    async def bench(ctx):
        for addr in addrs:
            await fill(ctx, dut, addr, words_of(FILLED, addr), COMPLETION)
        while not drained(dut, neighbours, len(addrs)):
            await ctx.tick()

    run(dut, bench, neighbours.caches, neighbours.memory_writes,
        *pipelined_memory(dut, latency), deadline_cycles=DEADLINE)
    assert neighbours.writes == [
        beat for addr in addrs
        for beat in written(addr, merged(words_of(MEMORY, addr), words_of(FILLED, addr),
                                         COMPLETION))]


def test_a_write_back_an_announcement_waits_for_goes_before_a_lookup():
    """RX full with memory not taking write-backs, an announcement waiting for a line and a
    mc_lookup waiting: once A's write-back is done, B's goes first, then the lookup."""
    dut = small_buffer(rx_lines=0)
    neighbours = Neighbours(dut)
    addrs = [A + 0x100 * index for index in range(6)]
    memory_open = {"open": False}
    log = []

    @background
    async def memory_writes(ctx):
        while not memory_open["open"]:
            await ctx.tick()
        await neighbours.memory_writes(ctx)

    async def filler(ctx):
        for addr in addrs:
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        memory_open["full"] = True
        await fill(ctx, dut, F, words_of(FILLED, F))

    async def looker(ctx):
        while not memory_open.get("full"):
            await ctx.tick()
        await ctx.tick()
        await stream_put(ctx, dut.mc_lookup, codec(LineRequest).pack(addr=E))
        assert (await stream_get(ctx, dut.mc_data)).hit == 0

    async def opener(ctx):
        while not memory_open.get("full"):
            await ctx.tick()
        await ctx.tick().repeat(10)
        memory_open["open"] = True

    trace = tracer(log, looked_up=transfer(dut.mc_lookup),
                   b_written=transfer(dut.mem_write) & (dut.mem_write.payload.addr == addrs[1]))
    run(dut, filler, looker, opener, neighbours.caches, neighbours.memory_reads, memory_writes,
        trace, deadline_cycles=DEADLINE)
    looked_up, = edges(log, "looked_up")
    assert edges(log, "b_written")[0] < looked_up


def test_tx_writes_go_every_cycle_while_a_coherence_answer_is_awaited():
    """The caches answer A's coherence request 20 cycles late, and A's words come after the
    answer: meanwhile nothing on the RX side writes, and TX writes are taken one per cycle."""
    dut = small_buffer()
    neighbours = Neighbours(dut)
    log = []

    @background
    async def slow_caches(ctx):
        while True:
            await serve(ctx, dut.coh_req)
            await ctx.tick().repeat(20)
            await put_line(ctx, dut.coh_resp, codec(CohResponse), [{}])

    async def rx(ctx):
        await announce(ctx, dut, A)
        await ctx.tick().until(transfer(dut.coh_resp))
        await send_fill(ctx, dut, words_of(FILLED, A))

    async def tx(ctx):
        line = await allocate(ctx, dut)
        await ctx.tick().until(transfer(dut.coh_req))
        for word in range(8):
            await tx_command(ctx, dut, MsgBufTxOp.WRITE, line, word, word)

    run(dut, rx, tx, slow_caches, neighbours.memory_reads, neighbours.memory_writes,
        tracer(log, write=transfer(dut.tx_cmd)), deadline_cycles=DEADLINE)
    writes = edges(log, "write")
    assert writes == list(range(writes[0], writes[0] + 8))


def test_an_announcement_decided_as_a_waiting_lookup_starts_leaves_the_line_to_it():
    """A mc_lookup of A waits while an NI read of B streams out. A's second announcement is
    decided in the very cycle B's last word is taken, when the reader starts the lookup: the
    lookup takes A over with its words, and the announcement then gets a line of its own."""
    mask = 0b0000_0001
    dut = small_buffer()
    neighbours = Neighbours(dut)
    answers = []

    taken = {"rx_line": 0}

    @background
    async def offers_withdrawn_once_taken(ctx):
        async for _, _, line, lookup in ctx.tick().sample(transfer(dut.rx_line),
                                                          transfer(dut.mc_lookup)):
            if line:
                ctx.set(dut.rx_line.valid, 0)
                taken["rx_line"] += 1
            if lookup:
                ctx.set(dut.mc_lookup.valid, 0)

    async def bench(ctx):
        for addr in (A, B):
            await fill(ctx, dut, addr, words_of(FILLED, addr))
        await stream_put(ctx, dut.ni_read, codec(LineRequest).pack(addr=B))
        for _ in range(7):
            await stream_get(ctx, dut.ni_data)
        ctx.set(Value.cast(dut.mc_lookup.payload), codec(LineRequest).pack(addr=A))
        ctx.set(dut.mc_lookup.valid, 1)
        await ctx.tick().repeat(4)
        ctx.set(Value.cast(dut.rx_line.payload), codec(RxLineRequest).pack(addr=A, words=mask))
        ctx.set(dut.rx_line.valid, 1)
        await ctx.tick()
        ctx.set(dut.ni_data.ready, 1)               # B's last word, as the announcement is decided
        await ctx.tick()
        ctx.set(dut.ni_data.ready, 0)
        beats = []
        while not beats or not beats[-1][2]:
            beat = await stream_get(ctx, dut.mc_data)
            beats.append((beat.hit, beat.data, beat.last))
        answers.append(beats)
        while taken["rx_line"] < 3:
            await ctx.tick()
        await send_fill(ctx, dut, words_of(REFILLED, A), mask)
        answers.append(await probe(ctx, dut, "ni_read", A))

    run(dut, bench, offers_withdrawn_once_taken, *neighbours.testbenches,
        deadline_cycles=DEADLINE)
    assert answers == [hit(words_of(FILLED, A)),
                       hit(merged(words_of(MEMORY, A), words_of(REFILLED, A), mask))]
    assert neighbours.coherence == [A, B, A]


def test_an_announcement_decided_as_a_merge_ends_leaves_the_line_to_the_waiting_lookup():
    """A mc_lookup of A waits for A's merge. A's second announcement is offered with memory's
    last word, so it is decided in the cycle the lookup may start: the lookup takes A over,
    merged, and the announcement then gets a line of its own."""
    second = 0b0001_0000
    dut = small_buffer()
    neighbours = Neighbours(dut)
    taken = {"rx_line": 0}
    answers = []

    @background
    async def offers_withdrawn_once_taken(ctx):
        async for _, _, line, lookup in ctx.tick().sample(transfer(dut.rx_line),
                                                          transfer(dut.mc_lookup)):
            if line:
                ctx.set(dut.rx_line.valid, 0)
                taken["rx_line"] += 1
            if lookup:
                ctx.set(dut.mc_lookup.valid, 0)

    async def memory_answer(ctx, beats):
        for word, data in enumerate(beats):
            await stream_put(ctx, dut.mem_read_data, codec(WordBeat).pack(data=data,
                                                                          last=word == 7))

    async def bench(ctx):
        await announce(ctx, dut, A, COMPLETION)
        await serve(ctx, dut.mem_read)
        await send_fill(ctx, dut, words_of(FILLED, A), COMPLETION)
        await memory_answer(ctx, words_of(MEMORY, A)[:7])
        ctx.set(Value.cast(dut.mc_lookup.payload), codec(LineRequest).pack(addr=A))
        ctx.set(dut.mc_lookup.valid, 1)
        await ctx.tick().repeat(4)
        ctx.set(Value.cast(dut.rx_line.payload), codec(RxLineRequest).pack(addr=A, words=second))
        ctx.set(dut.rx_line.valid, 1)
        await stream_put(ctx, dut.mem_read_data,
                         codec(WordBeat).pack(data=words_of(MEMORY, A)[7], last=1))
        beats = []
        while not beats or not beats[-1][2]:
            beat = await stream_get(ctx, dut.mc_data)
            beats.append((beat.hit, beat.data, beat.last))
        answers.append(beats)
        while taken["rx_line"] < 2:
            await ctx.tick()
        await serve(ctx, dut.mem_read)
        await memory_answer(ctx, words_of(MEMORY, A))
        await send_fill(ctx, dut, words_of(REFILLED, A), second)
        answers.append(await probe(ctx, dut, "ni_read", A))

    run(dut, bench, offers_withdrawn_once_taken, neighbours.caches, neighbours.memory_writes,
        deadline_cycles=DEADLINE)
    assert answers == [hit(merged(words_of(MEMORY, A), words_of(FILLED, A), COMPLETION)),
                       hit(merged(words_of(MEMORY, A), words_of(REFILLED, A), second))]
    assert neighbours.coherence == [A, A]


def test_the_write_port_turn_changes_only_in_a_cycle_both_sides_want():
    """A cycle both sides want goes to the side that lost the last one; TX writing alone in
    between does not change the turn."""
    memory = Memory(shape=FLIT_DATA_BITS, depth=16, init=[])
    port = _WritePort(memory.write_port(), lines=2)
    dut = Module()
    dut.submodules.memory, dut.submodules.port = memory, port
    fill, _, _, fill_granted = port.requesters["fill"]
    tx, _, _, tx_granted = port.requesters["tx"]
    # Each cycle: (fill wants, tx wants) -> who the port grants.
    cycles = [((1, 1), "fill"), ((0, 1), "tx"), ((1, 1), "tx"), ((1, 1), "fill"),
              ((0, 1), "tx"), ((0, 1), "tx"), ((1, 0), "fill"), ((1, 1), "tx"), ((0, 0), None)]
    granted = []

    async def bench(ctx):
        for (fill_wants, tx_wants), _ in cycles:
            ctx.set(fill, fill_wants)
            ctx.set(tx, tx_wants)
            granted.append({"fill": ctx.get(fill_granted), "tx": ctx.get(tx_granted)})
            await ctx.tick()

    run(dut, bench, deadline_cycles=len(cycles) + 2)
    winners = [next((side for side, won in grant.items() if won), None) for grant in granted]
    assert winners == [winner for _, winner in cycles]


def announcing_ahead(dut, lines, hints):
    """Return a testbench announcing ``lines`` (address, mask) back to back, with ``rx_next``
    naming ``hints[i]`` (an address, or None: not valid) for the i-th: in the cycle before the
    first is offered, and while the one before is offered."""
    def name(ctx, hint):
        ctx.set(dut.rx_next.valid, hint is not None)
        ctx.set(dut.rx_next.addr, hint or 0)

    async def announcer(ctx):
        name(ctx, hints[0])
        await ctx.tick()
        for index, (addr, mask) in enumerate(lines):
            name(ctx, hints[index + 1] if index + 1 < len(lines) else None)
            await announce(ctx, dut, addr, mask)
    return announcer


def announced_ahead(lines, hints, dirty=None, fill_after=0, done=None):
    """Announce and fill ``lines`` with ``hints`` (see :func:`announcing_ahead`), the fill
    beginning ``fill_after`` cycles late, the caches answering each coherence request 3 cycles
    after taking it; return the edges at which the announcements were offered (the first) and
    taken, the probes of every address, and the addresses the caches were asked for. ``done``,
    a list if given, gets the edges at which fills completed."""
    dut = MessageBuffer(lines=16, tx_lines=2, rx_lines=14)
    caches, asked = pipelined_caches(dut, 3, dirty)
    neighbours = Neighbours(dut)
    log, answers = [], []

    async def filler(ctx):
        if fill_after:
            await ctx.tick().repeat(fill_after)
        for addr, mask in lines:
            await send_fill(ctx, dut, words_of(FILLED, addr), mask)
        while len(edges(log, "done")) < len(lines):
            await ctx.tick()
        answers.extend([await probe(ctx, dut, "ni_read", addr)
                         for addr in dict.fromkeys(addr for addr, _ in lines)])

    trace = tracer(log, offered=dut.rx_line.valid, announced=transfer(dut.rx_line),
                   done=dut.rx_done)
    run(dut, announcing_ahead(dut, lines, hints), filler, *caches, neighbours.memory_reads,
        neighbours.memory_writes, trace, deadline_cycles=DEADLINE)
    if done is not None:
        done.extend(edges(log, "done"))
    return edges(log, "offered")[0], edges(log, "announced"), answers, asked


def test_announcements_named_ahead_are_taken_a_line_a_cycle():
    """Each announcement named on ``rx_next`` the cycle before is taken as it is offered, so
    that four lines go in on four consecutive edges; not named, each takes two edges, and named
    wrongly two as well (each waited for its own compare, so the one after it is compared, not
    its hint); and the lines end the same."""
    addrs = [A, B, C, D]
    lines = [(addr, FULL) for addr in addrs]
    expected = [hit(words_of(FILLED, addr)) for addr in addrs]
    for hints, waits in ((addrs, [0, 1, 1, 1]), ([None] * 4, [1, 2, 2, 2]),
                         ([E, F, E, F], [2, 2, 2, 2])):
        first, taken, answers, asked = announced_ahead(lines, hints)
        assert taken == [first + sum(waits[:index + 1]) for index in range(4)], hints
        assert (answers, asked) == (expected, addrs)


def test_a_line_named_ahead_as_it_is_allocated_waits_for_it():
    """The hint names the line allocated in that very cycle (the same address announced
    twice): its compare sees the line's new tag, so the second announcement waits for the first
    to complete, then merges into it with no second coherence request."""
    second = 0b1111_0000
    lines = [(A, FULL), (A, second), (B, FULL)]
    first, taken, answers, asked = announced_ahead(lines, [A, A, B],
                                                   dirty={A: words_of(DIRTY, A)})
    assert taken[0] == first and taken[1] > first + 3
    assert asked == [A, B]
    assert answers == [hit(merged(words_of(FILLED, A), words_of(FILLED, A), second)),
                       hit(words_of(FILLED, B))]


def test_an_announcement_that_waits_is_taken_as_soon_as_it_may_be():
    """An announcement that waits (here for the fill of its line) while the hint names the one
    after it is taken a fixed number of edges after the fill completes, however late the fill:
    its compare stays good every cycle it waits, not every other one (a taker free
    only every other cycle could then miss it for ever)."""
    second = 0b1111_0000
    lines = [(A, FULL), (A, second), (B, FULL)]
    waits = set()
    for late in range(4):
        done = []
        _, taken, _, _ = announced_ahead(lines, [A, B, B], fill_after=late, done=done)
        waits.add(taken[1] - done[0])
    assert len(waits) == 1, waits
