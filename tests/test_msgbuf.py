"""Unit tests of the message buffer (rtl/msgbuf.py) in the Amaranth simulator."""

import random

import pytest

from rtl.layouts import (CohResponse, LineRequest, MsgBufTxOp, RxFillBeat, RxLineRequest, WordBeat,
                         codec, msgbuf_tx_command_layout)
from rtl.msgbuf import MessageBuffer
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
    """A partial line's words are taken at once while its read from memory takes 100 cycles; an
    NI read offered meanwhile is taken the cycle after memory's last word, and finds memory's
    words merged under the fill's."""
    dut = small_buffer()
    neighbours = Neighbours(dut, memory_cycles=SLOW_MEMORY)
    log, answers = [], []

    async def bench(ctx):
        await fill(ctx, dut, A, words_of(FILLED, A), mask)
        answers.append(await probe(ctx, dut, "ni_read", A))

    trace = tracer(log, announced=transfer(dut.rx_line), filled=fill_done(dut),
                   merged=merge_done(dut), taken=transfer(dut.ni_read))
    run(dut, bench, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    announced, = edges(log, "announced")
    filled, = edges(log, "filled")
    merge_edge, = edges(log, "merged")
    # The coherence round trip and the memory read's request, then a word per cycle.
    assert filled - announced == 4 + bin(mask).count("1")
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


def test_merges_outstanding_at_most():
    """Partial lines keep arriving while memory takes 100 cycles (reads pipelined): MERGES reads
    are outstanding, the next partial line waits for the first merge, and every line ends up
    merged."""
    dut = MessageBuffer(lines=16, tx_lines=2, rx_lines=14)
    neighbours = Neighbours(dut)
    addrs = [A + index for index in range(MessageBuffer.MERGES + 2)]
    reads, log, answers = [], [], []
    clock = {"edge": 0}

    async def filler(ctx):
        for addr in addrs:
            await fill(ctx, dut, addr, words_of(FILLED, addr), MESSAGE)
        answers.extend([await probe(ctx, dut, "ni_read", addr) for addr in addrs])

    @background
    async def memory_reads(ctx):
        ctx.set(dut.mem_read.ready, 1)
        async for _, _, taken, addr in ctx.tick().sample(transfer(dut.mem_read),
                                                         dut.mem_read.payload.addr):
            clock["edge"] += 1
            if taken:
                reads.append((clock["edge"] + SLOW_MEMORY, addr))

    @background
    async def memory_answers(ctx):
        while True:
            await ctx.tick()
            if reads and reads[0][0] <= clock["edge"]:
                _, addr = reads.pop(0)
                await put_line(ctx, dut.mem_read_data, codec(WordBeat),
                               [dict(data=data) for data in words_of(MEMORY, addr)])

    trace = tracer(log, filled=fill_done(dut), merged=merge_done(dut), read=transfer(dut.mem_read))
    run(dut, filler, memory_reads, memory_answers, neighbours.caches, trace,
        deadline_cycles=DEADLINE)
    first_merge = edges(log, "merged")[0]
    assert sum(edge < first_merge for edge in edges(log, "read")) == MessageBuffer.MERGES
    assert sum(edge < first_merge for edge in edges(log, "filled")) == MessageBuffer.MERGES
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
    """Announcements run one ahead of the words: full lines take a word per cycle, and a line's
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
    last word, and hits; until then, no answer."""
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
                   filled=transfer(dut.rx_data) & dut.rx_data.payload.last)
    run(dut, filler, prober, trace, *neighbours.testbenches, deadline_cycles=DEADLINE)
    coherence, = edges(log, "coherence")
    filled, = edges(log, "filled")
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
        await fill(ctx, dut, A, words_of(FILLED, A))

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
