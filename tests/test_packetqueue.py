"""Unit tests of the RX engine's packet queue (rtl/packetqueue.py) in the Amaranth simulator: a
receiver that stages payloads and offers messages, and a writer that takes jobs and their words."""

import itertools
import random

from amaranth.hdl import Value

from rtl.layouts import HEADER_FLITS, PAGE_BITS, RxJob, codec
from rtl.packetqueue import QUEUED_JOBS, STAGING_WORDS, PacketQueue
from tests.sim import edges, run, stream_get, stream_put, tracer, transfer, waiting


def job(number, words, *, rejected=False, remote_va=0x1000_0000):
    return codec(RxJob).pack(src_node=1, dst_endpoint=number % 16, length=8 * words,
                             seq=number, rejected=rejected, remote_va=remote_va,
                             ppn=0x123 + number)


def payload(number, words):
    return [(number << 32) + index for index in range(words)]


async def receive(ctx, dut, number, words, *, rejected=False):
    """Stage message ``number``'s payload, then offer it until the queue takes it."""
    for index, data in enumerate(payload(number, words)):
        await stream_put(ctx, dut.staging, dict(index=index, words=words, data=data))
    await stream_put(ctx, dut.message, job(number, words, rejected=rejected))


def test_jobs_come_out_in_order_with_their_words_and_wait_while_the_writer_is_busy():
    """Six messages arrive while the writer takes nothing: the queue takes the oldest into its
    register and QUEUED_JOBS behind it, the next waits; then the writer takes them in order,
    each with its payload words."""
    dut = PacketQueue()
    sizes = [3, 1, 256, 0, 2, 5]
    assert len(sizes) == QUEUED_JOBS + 2
    taken = []

    handed = []

    async def receiver(ctx):
        for number, words in enumerate(sizes):
            await receive(ctx, dut, number, words)
            handed.append(number)

    async def writer(ctx):
        await ctx.tick().repeat(400)
        assert ctx.get(dut.message.valid) and not ctx.get(dut.message.ready)
        assert len(handed) == 1 + QUEUED_JOBS
        for _ in sizes:
            ctx.set(dut.job.ready, 1)
            with waiting(ctx, "a job"):
                bits, = await ctx.tick().sample(Value.cast(dut.job.payload)).until(dut.job.valid)
            ctx.set(dut.job.ready, 0)
            fields = codec(RxJob).unpack(bits)
            words = [await stream_get(ctx, dut.words) for _ in range(fields["length"] // 8)]
            taken.append((fields["seq"], words))

    run(dut, receiver, writer, deadline_cycles=2000)
    assert taken == [(number, payload(number, words)) for number, words in enumerate(sizes)]


def test_a_message_handed_over_goes_to_a_ready_writer_with_nothing_queued_at_the_next_edge():
    """The oldest job waits in a register: a message handed over at edge H to an empty queue is
    the job a ready writer takes at H + 1 (its first line is next_line from H + 1 on, before
    that the incoming one's); the second message, handed over later, likewise."""
    dut = PacketQueue()
    log, seen = [], []

    async def receiver(ctx):
        ctx.set(dut.incoming_line, dict(valid=1, addr=0x5555))
        await receive(ctx, dut, 7, 2)
        ctx.set(dut.incoming_line, dict(valid=1, addr=0x6666))
        await receive(ctx, dut, 8, 1)

    async def writer(ctx):
        ctx.set(dut.job.ready, 1)
        for _ in range(2):
            bits, = await ctx.tick().sample(Value.cast(dut.job.payload)).until(transfer(dut.job))
            seen.append(codec(RxJob).unpack(bits)["seq"])
        ctx.set(dut.job.ready, 0)
        seen.append([await stream_get(ctx, dut.words) for _ in range(3)])

    run(dut, receiver, writer,
        tracer(log, handoff=transfer(dut.message), take=transfer(dut.job),
               line=dut.next_line.addr),
        deadline_cycles=200)
    handoffs, takes = edges(log, "handoff"), edges(log, "take")
    assert takes == [handoffs[0] + 1, handoffs[1] + 1]
    assert log[handoffs[0]]["line"] == 0x5555
    first_line = 0x1000_0000 >> 6 & ((1 << (PAGE_BITS - 6)) - 1) | (0x123 + 7) << (PAGE_BITS - 6)
    assert log[handoffs[0] + 1]["line"] == first_line
    assert seen == [7, 8, payload(7, 2) + payload(8, 1)]


def test_jobs_handed_over_and_taken_at_random_moments_come_out_once_each_in_order(seed):
    """Messages arrive at random gaps while the writer takes jobs and words at random moments,
    so that a message is handed over into an empty queue, behind the head, in the cycle the head
    is taken with nothing queued, as the newest job moves into the queue, and as a word is
    taken: every job comes out once, in order, with its words, and nothing after the last. Then
    the RAM is whole again and no more: two largest payloads fit in it while the writer takes
    nothing, and a word more waits for the writer."""
    rng = random.Random(seed)
    sizes = [rng.choice([0, 1, 2, 3, 8, 9]) for _ in range(150)]
    gaps = [rng.choice([0, 0, 1, 3]) for _ in sizes]

    def bursts(cycles):
        """Ready at random, in stretches of 1 to 30 cycles mostly ready or mostly not."""
        pattern = []
        while len(pattern) < cycles:
            odds = rng.choice([0.1, 0.5, 0.9])
            pattern += [rng.random() < odds for _ in range(rng.randint(1, 30))]
        return pattern[:cycles]
    readiness, word_readiness = bursts(3000), bursts(3000)
    largest = [len(sizes), len(sizes) + 1]
    dut = PacketQueue()
    taken, drained, largest_in, one_more = [], [], [], []

    async def arrive(ctx, number, words, gap=0):
        """A message's header flits (which fix the words its payload asks room for), a gap,
        its payload and its handover; then what a receiver shows, which is no job to keep."""
        ctx.set(dut.staging.payload.words, words)
        await ctx.tick().repeat(HEADER_FLITS + gap)
        await receive(ctx, dut, number, words)
        ctx.set(Value.cast(dut.message.payload), job(99, 1))

    async def receiver(ctx):
        for number, (words, gap) in enumerate(zip(sizes, gaps)):
            await arrive(ctx, number, words, gap)
        with waiting(ctx, "the writer to take every job"):
            while not drained:
                await ctx.tick()
        for number in largest:
            await arrive(ctx, number, STAGING_WORDS)
            largest_in.append(number)
        await arrive(ctx, largest[-1] + 1, 1)
        one_more.append(True)

    async def writer(ctx):
        for ready in readiness:
            ctx.set(dut.job.ready, ready)
            *_, bits, took = await ctx.tick().sample(Value.cast(dut.job.payload),
                                                     transfer(dut.job))
            if took:
                taken.append(codec(RxJob).unpack(bits))
        ctx.set(dut.job.ready, 1)
        await ctx.tick().repeat(40)
        assert not ctx.get(dut.job.valid), "a job after the last"
        ctx.set(dut.job.ready, 0)
        drained.append(True)
        # Both largest payloads are handed over with nothing taken, then taken.
        await ctx.tick().repeat(2 * STAGING_WORDS + 20)
        assert largest_in == largest, "two largest payloads not taken into the RAM"
        assert not one_more, "a word more than the RAM holds taken"
        for _ in largest + [0]:
            ctx.set(dut.job.ready, 1)
            bits, = await ctx.tick().sample(Value.cast(dut.job.payload)).until(
                transfer(dut.job))
            taken.append(codec(RxJob).unpack(bits))
        ctx.set(dut.job.ready, 0)

    expected = [word for number, count in enumerate(sizes + [STAGING_WORDS] * 2 + [1])
                for word in payload(number, count)]
    got = []

    async def words(ctx):
        with waiting(ctx, "every payload word"):
            for cycle in itertools.count():
                ctx.set(dut.words.ready, cycle >= len(word_readiness) or word_readiness[cycle])
                *_, word, took = await ctx.tick().sample(dut.words.payload,
                                                         transfer(dut.words))
                got.extend([word] if took else [])
                if len(got) == len(expected):
                    break

    run(dut, receiver, writer, words, deadline_cycles=6000)
    assert [job["seq"] for job in taken] == list(range(len(sizes) + 3)), f"seed {seed}"
    assert got == expected, f"seed {seed}"


def test_a_jobs_words_are_offered_from_the_second_edge_after_it_is_taken():
    """The count of a job's words starts in the cycle after the take (the take comes late, from
    the writer): its first word is offered at the second edge after it, not before, and the
    words follow one an edge while taken."""
    dut = PacketQueue()
    log = []

    async def receiver(ctx):
        await receive(ctx, dut, 3, 2)

    async def writer(ctx):
        ctx.set(dut.job.ready, 1)
        await ctx.tick().until(transfer(dut.job))
        ctx.set(dut.job.ready, 0)
        ctx.set(dut.words.ready, 1)
        await ctx.tick().repeat(6)

    run(dut, receiver, writer, tracer(log, take=transfer(dut.job), offered=dut.words.valid,
                                      word=transfer(dut.words)),
        deadline_cycles=200)
    take, = edges(log, "take")
    assert edges(log, "offered") == edges(log, "word") == [take + 2, take + 3]


def test_payload_words_wait_for_room_and_a_rejected_message_keeps_none():
    """Two largest payloads fill the RAM: a third message's first word waits until the writer
    has taken as many words as it needs, not one more; a rejected message frees its words."""
    dut = PacketQueue()
    events = []

    async def receiver(ctx):
        await receive(ctx, dut, 0, STAGING_WORDS)
        await receive(ctx, dut, 1, STAGING_WORDS, rejected=True)
        await receive(ctx, dut, 2, STAGING_WORDS)
        await receive(ctx, dut, 3, 4)
        events.append(("staged", len(events)))

    async def writer(ctx):
        await ctx.tick().repeat(3 * STAGING_WORDS + 50)
        events.append(("ready", ctx.get(dut.staging.ready)))
        ctx.set(dut.job.ready, 1)
        await ctx.tick().until(dut.job.valid)
        ctx.set(dut.job.ready, 0)
        for _ in range(4):
            await stream_get(ctx, dut.words)
        await ctx.tick().repeat(3)
        events.append(("after 4 words", ctx.get(dut.staging.ready)))

    run(dut, receiver, writer, deadline_cycles=3000)
    # The rejected message kept no words: the third fit beside the first; the fourth waited.
    assert events[0] == ("ready", 0)
    assert ("after 4 words", 1) in events


def test_next_line_is_the_oldest_queued_jobs_first_line_else_the_incoming_one():
    dut = PacketQueue()
    lines = []

    async def bench(ctx):
        ctx.set(dut.incoming_line.valid, 1)
        ctx.set(dut.incoming_line.addr, 0x5555)
        await ctx.tick()
        lines.append((ctx.get(dut.next_line.valid), ctx.get(dut.next_line.addr)))
        await stream_put(ctx, dut.message, codec(RxJob).pack(
            length=8, remote_va=0x7000_0fc8, seq=1, ppn=0x321))
        await ctx.tick()
        lines.append((ctx.get(dut.next_line.valid), ctx.get(dut.next_line.addr)))

    run(dut, bench, deadline_cycles=100)
    assert lines == [(1, 0x5555), (1, (0x321 << (PAGE_BITS - 6)) | (0xfc8 >> 6))]


def test_a_job_taken_before_the_words_of_the_one_before_gets_its_words_after_them():
    """The writer takes three jobs (one rejected) before any of their words: the words come out
    as one stream, each job's after those of the jobs before it."""
    dut = PacketQueue()
    sizes = [3, 0, 5, 2]
    words = []

    async def receiver(ctx):
        for number, count in enumerate(sizes):
            await receive(ctx, dut, number, count, rejected=number == 1)

    async def writer(ctx):
        for _ in sizes[:3]:
            await stream_get(ctx, dut.job)
        words.extend([await stream_get(ctx, dut.words) for _ in range(5)])
        await stream_get(ctx, dut.job)
        words.extend([await stream_get(ctx, dut.words) for _ in range(5)])

    run(dut, receiver, writer, deadline_cycles=400)
    assert words == payload(0, 3) + payload(2, 5) + payload(3, 2)
