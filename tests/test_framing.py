"""Unit tests of the message framer (rtl/framing.py) in the Amaranth simulator, against the
link format of behavioral/message.py."""

import random

from behavioral.message import Message
from rtl.framing import MessageFramer
from rtl.layouts import FLIT_BYTES, MAX_PAYLOAD_BYTES, MessageHeader, MessageKind, codec
from tests.sim import run, stream_put


def random_message(rng, payload_bytes=None):
    if payload_bytes is None:
        payload_bytes = FLIT_BYTES * rng.choice([0, 1, 2, 7, 8, rng.randrange(257)])
    return Message(dst_node=rng.randrange(16), src_node=rng.randrange(16),
                   dst_endpoint=rng.randrange(16), kind=MessageKind.PUT,
                   notify=rng.random() < 0.5, seq=rng.getrandbits(16), key=rng.getrandbits(16),
                   remote_va=rng.getrandbits(48), metadata=rng.getrandbits(64),
                   payload=rng.randbytes(payload_bytes))


def frame(messages, *, rng=None, ready_percent=100, idle_percent=0):
    """Send ``messages`` through a framer; return the flits, as ``(data, last)``, and the edges
    at which they went."""
    dut = MessageFramer()
    flits, edges = [], []
    wanted = sum(len(message.flits()) for message in messages)
    rng = rng or random.Random(0)
    payload_rng, ready_rng = random.Random(rng.random()), random.Random(rng.random())

    async def headers(ctx):
        for message in messages:
            await stream_put(ctx, dut.header, message.header_bits())

    async def payload(ctx):
        for message in messages:
            for offset in range(0, len(message.payload), FLIT_BYTES):
                while payload_rng.randrange(100) < idle_percent:
                    await ctx.tick()
                word = int.from_bytes(message.payload[offset:offset + FLIT_BYTES], "little")
                await stream_put(ctx, dut.payload, word)

    async def link(ctx):
        edge = 0
        while len(flits) < wanted:
            ready = ready_rng.randrange(100) < ready_percent
            ctx.set(dut.flits.ready, ready)
            _, _, valid, data, last = await ctx.tick().sample(
                dut.flits.valid, dut.flits.payload.data, dut.flits.payload.last)
            if valid and ready:
                flits.append((data, last))
                edges.append(edge)
            edge += 1

    run(dut, headers, payload, link, deadline_cycles=20 * wanted + 100)
    return flits, edges


def expected(messages):
    return [flit for message in messages for flit in message.flits()]


def test_one_message_per_size(seed):
    """Header, payload and CRC trailer exactly as the link format says, for 0 to 2 KiB."""
    rng = random.Random(seed)
    for size in (0, FLIT_BYTES, 3 * FLIT_BYTES, 64, MAX_PAYLOAD_BYTES):
        messages = [random_message(rng, size)]
        flits, _ = frame(messages, rng=rng)
        assert flits == expected(messages), f"seed {seed}, {size} bytes"
        assert Message.from_flits(flits) == messages[0]


def test_back_to_back_messages_at_one_flit_per_cycle():
    """With the link always ready and the payload always there, messages follow each other with
    no idle cycle: one flit per edge from the first to the last."""
    rng = random.Random(1)
    messages = [random_message(rng) for _ in range(12)]
    flits, edges = frame(messages, rng=rng)
    assert flits == expected(messages)
    assert edges == list(range(edges[0], edges[0] + len(flits)))


def test_backpressure_and_bubbles_lose_nothing(seed):
    """A link that is ready now and then and a payload source with bubbles: every flit once, in
    order, and every CRC right."""
    rng = random.Random(seed)
    messages = [random_message(rng) for _ in range(20)]
    flits, _ = frame(messages, rng=rng, ready_percent=60, idle_percent=30)
    assert flits == expected(messages), f"seed {seed}"


def test_the_header_sits_in_the_first_flits():
    """The destination node is in the first flit (the Fabric routes on it)."""
    message = random_message(random.Random(2), 16)
    flits, _ = frame([message])
    assert codec(MessageHeader).field(flits[0][0], "dst_node") == message.dst_node
