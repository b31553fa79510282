"""Unit tests of the TX engine's payload fetcher (rtl/fetcher.py) in the Amaranth simulator, with
the fake MessageBuffer and memory of tests/test_txengine.py, a fake TX slot and a framer that
takes the header and then the words."""

import random
from collections import deque

import pytest

from rtl.fetcher import PayloadFetcher
from rtl.layouts import LINE_WORDS, MessageHeader, SendPlan, codec
from rtl.params import silence_unused
from tests.sim import background, edges, run, tracer, transfer, waiting
from tests.test_txengine import Bench as EngineBench, buffered_word, memory_word

MASK64 = (1 << 64) - 1


def slot_word(plan, word):
    """What the TX slot holds at payload word ``word`` for plan number ``plan``."""
    return (0xA000_0000_0000_0000 | plan << 16 | word) & MASK64


class Plan:
    """A plan: its payload's bytes and where they are (the slot, or memory from ``offset`` in frame
    ``ppn``, then ``next_ppn``)."""

    def __init__(self, number, length, *, dma=False, offset=0, ppn=0x456, next_ppn=0x9AB):
        self.number, self.length, self.dma = number, length, dma
        self.offset, self.ppn, self.next_ppn = offset, ppn, next_ppn

    def bits(self):
        return codec(SendPlan).pack(header=dict(length=self.length, seq=self.number,
                                                metadata=0xFEED_0000 | self.number),
                                    dma=int(self.dma), offset=self.offset, ppn=self.ppn,
                                    next_ppn=self.next_ppn)

    def lines(self):
        """The physical lines of a DMA payload, in order."""
        return sorted({self.where(index)[0] for index in range(self.length // 8)})

    def where(self, index):
        """The physical line and the word in it of DMA payload word ``index``."""
        offset = (self.offset & ~7) + 8 * index
        frame = self.ppn if offset < 0x1000 else self.next_ppn
        address = frame << 12 | offset & 0xFFF
        return address >> 6, (address >> 3) & 7

    def words(self, buffered):
        if not self.dma:
            return [slot_word(self.number, index) for index in range(self.length // 8)]
        return [(buffered_word if line in buffered else memory_word)(line, word)
                for line, word in map(self.where, range(self.length // 8))]


class Bench(EngineBench):
    """The fetcher with the engine bench's fake MessageBuffer and memory; a TX slot that answers
    each read ``slot_latency`` cycles after it; a framer that takes the header, then the words
    (in ``words_ready_percent`` of the cycles). ``log`` holds, for every clock edge, the fetcher's
    handshakes at that edge."""

    def __init__(self, *, send_buffering=4, memory_latency=10, memory_ready_percent=100,
                 words_ready_percent=100, slot_latency=1, seed=0, deadline_cycles=20_000):
        self.dut = PayloadFetcher(send_buffering=send_buffering)
        self.send_buffering = send_buffering
        self.memory_latency, self.memory_ready_percent = memory_latency, memory_ready_percent
        self.words_ready_percent, self.slot_latency = words_ready_percent, slot_latency
        self.rng, self.deadline_cycles = random.Random(seed), deadline_cycles
        self.buffered, self.probes, self.reads = set(), [], []
        self.headers, self.words, self.log = [], [], []
        self.plan_number = None
        self.done = False

    async def fetch(self, ctx, plan):
        """Offer ``plan`` until the fetcher takes it."""
        port = self.dut.plan
        self.plan_number = plan.number
        ctx.set(port.valid, 1)
        ctx.set(port.payload.as_value(), plan.bits())
        with waiting(ctx, f"the fetcher to take plan {plan.number}"):
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    @background
    async def slot(self, ctx):
        dut = self.dut
        due = deque()
        edge = 0
        ctx.set(dut.slot_read.ready, 1)
        async for _, _, read, word in ctx.tick().sample(transfer(dut.slot_read),
                                                        dut.slot_read.payload.word):
            edge += 1
            if self.done:
                return
            if read:
                due.append((edge + self.slot_latency - 1, slot_word(self.plan_number, word)))
            answer = due and due[0][0] <= edge
            ctx.set(dut.slot_data.valid, bool(answer))
            if answer:
                ctx.set(dut.slot_data.payload, due.popleft()[1])

    @background
    async def framer(self, ctx):
        dut = self.dut
        ctx.set(dut.header.ready, 1)
        async for _, _, header, bits, word, data in ctx.tick().sample(
                transfer(dut.header), dut.header.payload.as_value(), transfer(dut.words),
                dut.words.payload):
            if self.done:
                return
            if header:
                self.headers.append(codec(MessageHeader).unpack(bits))
            if word:
                self.words.append(data)
            ctx.set(dut.words.ready, self.left() > 0
                    and self.rng.randrange(100) < self.words_ready_percent)

    def left(self):
        """Payload words of the last header not yet taken."""
        return sum(header["length"] // 8 for header in self.headers) - len(self.words)

    def run(self, user, *monitors):
        dut = self.dut
        watch = tracer(self.log, until=lambda: self.done,
                       plan=dut.plan.valid, taken=transfer(dut.plan),
                       header=transfer(dut.header), header_offered=dut.header.valid,
                       word=transfer(dut.words), word_ready=dut.words.valid,
                       read=transfer(dut.slot_read), probe=transfer(dut.ni_read),
                       memory=transfer(dut.dma_read), arrived=transfer(dut.dma_data),
                       lines=dut.count_dma_lines, dma_cycles=dut.count_dma_cycles,
                       word_cycles=dut.count_dma_buffer_word_cycles)

        async def user_then_stop(ctx):
            await user(ctx)
            await ctx.tick().repeat(5)
            self.done = True

        run(dut, self.slot, self.framer, self.msgbuf, self.memory, watch, *monitors,
            user_then_stop, deadline_cycles=self.deadline_cycles)

    def at(self, name):
        return edges(self.log, name)

    def check_messages(self, plans):
        assert [header["seq"] for header in self.headers] == [plan.number for plan in plans]
        assert self.words == [word for plan in plans for word in plan.words(self.buffered)]


# PIO --------------------------------------------------------------------------------------------

def test_pio_header_at_once_then_every_word_in_order_at_one_per_cycle():
    """A 2 KiB PIO plan: the header is offered at the first edge the plan is, the slot read from
    that edge on, word by word; the words follow at one per cycle; the plan is taken at the edge
    after the last word."""
    bench = Bench()
    plan = Plan(1, 2048)

    async def user(ctx):
        await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages([plan])
    first = bench.at("plan")[0]
    assert bench.at("header") == [first] and bench.at("read")[0] == first
    words = bench.at("word")
    assert words == list(range(words[0], words[0] + 256))
    assert bench.at("taken") == [words[-1] + 1]
    assert not bench.probes and not bench.reads
    # (the counters of the buffer's use count DMA plans only)
    assert bench.log[-1]["dma_cycles"] == bench.log[-1]["word_cycles"] == 0


@pytest.mark.parametrize("send_buffering", [1, 3])
def test_pio_reads_wait_for_room_in_the_fifo(send_buffering):
    """A framer that takes no word for a while: the slot is read no further than the FIFO holds,
    and reading goes on as words are taken."""
    bench = Bench(send_buffering=send_buffering, words_ready_percent=20, seed=3)
    plan = Plan(2, 800)

    async def user(ctx):
        await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages([plan])
    read = taken = 0
    ahead = []
    for row in bench.log:
        read, taken = read + row["read"], taken + row["word"]
        ahead.append(read - taken)
    assert max(ahead) == send_buffering * LINE_WORDS


def test_pio_slot_may_answer_late():
    """A slot that answers 4 cycles after each read: every word, in order."""
    bench = Bench(slot_latency=4, send_buffering=1)
    plans = [Plan(1, 200), Plan(2, 8)]

    async def user(ctx):
        for plan in plans:
            await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages(plans)


# DMA --------------------------------------------------------------------------------------------

def test_dma_across_a_page_with_buffered_lines():
    """A DMA payload from mid-line into the next frame: its lines probed in order, the buffered
    ones taken from the MessageBuffer, the others read from memory, only the covered words
    sent; counted."""
    bench = Bench()
    plan = Plan(3, 400, dma=True, offset=0xFC8, ppn=0x456, next_ppn=0x9AB)
    lines = [0x456 << 6 | 0x3F] + [0x9AB << 6 | i for i in range(6)]
    bench.buffered = {lines[0], lines[2], lines[3]}

    async def user(ctx):
        await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages([plan])
    assert plan.lines() == lines and bench.probes == lines
    assert bench.reads == [line for line in lines if line not in bench.buffered]
    assert bench.log[-1]["lines"] == len(lines)


def test_dma_a_hit_and_a_memory_line_ending_together_both_count():
    """Replays what random plans found (seed 591953854): six lines from memory and a last one
    from the MessageBuffer, memory and framer at random; the hit's last word comes in the cycle
    memory's last does. Both lines count as arrived, and the plan is taken."""
    bench = Bench(send_buffering=4, memory_latency=1, memory_ready_percent=50,
                  words_ready_percent=60, seed=591953854, deadline_cycles=2000)
    plan = Plan(7, 424, dma=True, offset=0x91C)
    bench.buffered = {plan.lines()[-1]}

    async def user(ctx):
        await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages([plan])


def test_dma_lines_are_those_from_the_first_word_to_the_last():
    """Plans from every kind of start in a line and of length: the lines probed are exactly those
    from the first word's to the last word's, and each payload is sent whole."""
    bench = Bench()
    plans = [Plan(number, 8 * words, dma=True, offset=0x80 * number + 8 * first)
             for number, (first, words) in enumerate(
                 (first, words) for first in (0, 1, 5, 7) for words in (1, 3, 6, 8, 9, 17))]

    async def user(ctx):
        for plan in plans:
            await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages(plans)
    assert bench.probes == [line for plan in plans for line in plan.lines()]


def test_dma_header_waits_for_the_first_payload_word():
    """With memory 40 cycles away the header is offered at the first edge a payload word is ready
    to go, not before."""
    bench = Bench(memory_latency=40)
    plan = Plan(5, 128, dma=True, offset=0x100)

    async def user(ctx):
        await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages([plan])
    first_word = bench.at("word_ready")[0]
    assert bench.at("header_offered")[0] == bench.at("header")[0] == first_word
    assert first_word > bench.at("memory")[0] + 40


def test_dma_plan_is_taken_once_the_last_line_has_all_arrived():
    """A payload ending in the first word of a line, fetched one line ahead: the words of that
    line after the payload still arrive after the last payload word has gone, and the plan is
    taken only after the last of them."""
    bench = Bench(send_buffering=1, memory_latency=10)
    plan = Plan(6, 72, dma=True, offset=0x000)

    async def user(ctx):
        await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages([plan])
    assert bench.at("taken")[0] > bench.at("arrived")[-1] > bench.at("word")[-1]
    assert bench.at("taken") == [bench.at("arrived")[-1] + 1]


@pytest.mark.parametrize("dma, offset", [(False, 0), (True, 0x000), (True, 0x028)])
def test_no_payload_header_only(dma, offset):
    """A plan of 0 bytes, PIO or DMA from an aligned or a mid-line offset: the header at once, no
    read, probe or memory read; the plan taken at the next edge."""
    bench = Bench()
    plan = Plan(7, 0, dma=dma, offset=offset)

    async def user(ctx):
        await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages([plan])
    assert bench.at("header") == [bench.at("plan")[0]]
    assert bench.at("taken") == [bench.at("header")[0] + 1]
    assert not bench.at("read") and not bench.probes and not bench.reads


def test_plans_back_to_back_each_start_afresh():
    """Plans offered one right after the other (the next in the cycle after the last is taken),
    PIO and DMA, from mid-line and whole lines, some lines buffered: each message whole."""
    bench = Bench(send_buffering=2, memory_latency=5)
    bench.buffered = {0x456 << 6 | 3, 0x456 << 6 | 9}
    plans = [Plan(1, 2048), Plan(2, 136, dma=True, offset=0x0C8), Plan(3, 16),
             Plan(4, 2048, dma=True, offset=0x238), Plan(5, 0, dma=True, offset=0x38),
             Plan(6, 24, dma=True, offset=0x238)]

    async def user(ctx):
        for plan in plans:
            await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages(plans)
    assert all(bench.log[edge + 1]["plan"] for edge in bench.at("taken")[:-1])
    assert bench.probes == [line for plan in plans if plan.dma for line in plan.lines()]


def _slow_framer_dma(send_buffering, seed):
    """Run a 1 KiB DMA plan of whole lines, some buffered, to a framer taking 30 % of the words
    offered; check its words and return the bench."""
    bench = Bench(send_buffering=send_buffering, words_ready_percent=30, seed=seed,
                  memory_latency=3)
    bench.buffered = {0x456 << 6 | line for line in range(0, 64, 3)}
    plan = Plan(8, 1024, dma=True, offset=0x0C0)

    async def user(ctx):
        await bench.fetch(ctx, plan)

    bench.run(user)
    bench.check_messages([plan])
    return bench


@pytest.mark.parametrize("send_buffering", [1, 4])
def test_dma_fetch_runs_at_most_send_buffering_lines_ahead(send_buffering, seed):
    """A slow framer, a payload of whole lines: the lines probed never hold more words than the
    FIFO, counting those the framer has taken, and every word still comes, in order."""
    bench = _slow_framer_dma(send_buffering, seed)
    probed = taken = 0
    ahead = []
    for row in bench.log:
        probed, taken = probed + row["probe"], taken + row["word"]
        ahead.append(probed * LINE_WORDS - taken)
    assert max(ahead) == send_buffering * LINE_WORDS, f"seed {seed}"


@pytest.mark.parametrize("send_buffering", [1, 4])
def test_dma_counters_count_the_plans_cycles_and_the_buffers_words_in_use(send_buffering, seed):
    """A slow framer: ``count_dma_cycles`` counts the cycles the DMA plan is in hand, and
    ``count_dma_buffer_word_cycles`` grows each of them by the buffer's words in use, no fewer
    than the lines probed (8 words each) and not yet taken by the framer, never more than the
    buffer holds: all of it while the framer waits on a full buffer."""
    bench = _slow_framer_dma(send_buffering, seed)
    log = bench.log
    assert log[-1]["dma_cycles"] == sum(row["plan"] for row in log), f"seed {seed}"
    probed = taken = 0
    for row, after in zip(log, log[1:]):
        in_use = after["word_cycles"] - row["word_cycles"]
        if not row["plan"]:
            assert in_use == 0
        else:
            assert probed * LINE_WORDS - taken <= in_use <= send_buffering * LINE_WORDS, \
                f"seed {seed}, edge {log.index(row)}"
        probed, taken = probed + row["probe"], taken + row["word"]
    most = max(after["word_cycles"] - row["word_cycles"] for row, after in zip(log, log[1:]))
    assert most == send_buffering * LINE_WORDS, f"seed {seed}"


def _lines_ahead(log, plans_from=0):
    """The most words probed ahead of the framer, counting those it took, per plan taken: the
    count restarts at each plan's first probe after the one before was taken."""
    most, probed, taken, plan = [0], 0, 0, 0
    for row in log:
        probed, taken = probed + row["probe"], taken + row["word"]
        most[plan] = max(most[plan], probed * LINE_WORDS - taken)
        if row["taken"]:
            most.append(0)
            plan += 1
            probed = taken = 0
    return most


@pytest.mark.parametrize("buffering", [1, 3, 8])
def test_dma_fetch_runs_at_most_the_tuned_lines_ahead(buffering, seed):
    """``buffering`` below ``send_buffering`` bounds the lines fetched ahead as
    ``send_buffering`` does; a change while a plan is under way waits for the next plan."""
    bench = Bench(send_buffering=8, words_ready_percent=30, seed=seed, memory_latency=3)
    bench.buffered = {0x456 << 6 | line for line in range(0, 64, 3)}
    plans = [Plan(1, 1024, dma=True, offset=0x0C0), Plan(2, 1024, dma=True, offset=0x0C0)]

    async def user(ctx):
        ctx.set(bench.dut.buffering, buffering)
        await ctx.tick()
        port = bench.dut.plan
        bench.plan_number = 1
        ctx.set(port.valid, 1)
        ctx.set(port.payload.as_value(), plans[0].bits())
        await ctx.tick().repeat(3)
        # (while the first plan is under way: it keeps its value, the next takes this one)
        ctx.set(bench.dut.buffering, 2)
        await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)
        await bench.fetch(ctx, plans[1])

    bench.run(user)
    bench.check_messages(plans)
    assert _lines_ahead(bench.log)[:2] == [buffering * LINE_WORDS, 2 * LINE_WORDS], \
        f"seed {seed}"
    # (the buffer's words in use are counted against the plan's own budget)
    first = bench.at("taken")[0]
    assert max(after["word_cycles"] - row["word_cycles"]
               for row, after in zip(bench.log[:first], bench.log[1:first + 1])) \
        == buffering * LINE_WORDS, f"seed {seed}"


def test_random_plans_memory_and_framer_lose_nothing(seed):
    """Random plans, PIO and DMA, back to back, from a memory that takes reads at random, a
    MessageBuffer holding some lines and a framer that takes words at random."""
    rng = random.Random(seed)
    bench = Bench(send_buffering=rng.choice([1, 2, 4]), memory_latency=rng.choice([1, 7]),
                  memory_ready_percent=50, words_ready_percent=60, seed=seed,
                  deadline_cycles=100_000)
    bench.buffered = {frame << 6 | line for frame in (0x456, 0x9AB) for line in range(64)
                      if rng.random() < 0.4}
    plans = [Plan(number, 8 * rng.choice([0, 1, 7, 8, 9, rng.randrange(257)]),
                  dma=rng.random() < 0.6, offset=rng.randrange(4096))
             for number in range(12)]

    async def user(ctx):
        for plan in plans:
            await bench.fetch(ctx, plan)

    bench.run(user)
    assert [header["seq"] for header in bench.headers] == list(range(12)), f"seed {seed}"
    assert bench.words == [word for plan in plans for word in plan.words(bench.buffered)], \
        f"seed {seed}"
    assert bench.probes == [line for plan in plans if plan.dma for line in plan.lines()], \
        f"seed {seed}"


# Parameters ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("params, error, text", [
    (dict(send_buffering=0), ValueError, "send_buffering must be between 1 and 16, not 0"),
    (dict(send_buffering=17), ValueError, "send_buffering must be between 1 and 16, not 17"),
    (dict(send_buffering="4"), TypeError, "send_buffering must be an integer, not '4'"),
])
def test_bad_parameters_raise_naming_themselves(params, error, text):
    with pytest.raises(error, match=text):
        PayloadFetcher(**params)


def test_default_parameters():
    fetcher = PayloadFetcher()
    assert fetcher.send_buffering == 4 and len(fetcher.count_dma_lines) == 32
    silence_unused(fetcher)
