"""The link fault injector (:mod:`rtl.faults`) against its model,
:func:`behavioral.message.apply_link_fault`: random messages, random faults, random backpressure."""

import random

import pytest

from behavioral.message import Message, apply_link_fault
from rtl.faults import LinkFaultInjector
from rtl.layouts import MAX_MESSAGE_FLITS, Flit, LinkFaultKind, codec

from .sim import run, stream_get, stream_put, waiting


def messages(rng, count):
    return [Message(dst_node=1, src_node=0, metadata=index,
                    payload=bytes(rng.randrange(256) for _ in range(8 * rng.randrange(0, 12))))
            .flits() for index in range(count)]


def random_fault(rng, flits):
    kind = rng.choice(list(LinkFaultKind))
    return {"kind": kind, "flit": rng.choice([rng.randrange(len(flits) + 2),
                                              rng.randrange(MAX_MESSAGE_FLITS)]),
            "bit": rng.randrange(64)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_faults_against_the_model(seed):
    print(f"seed {seed}")
    rng = random.Random(seed)
    sent = messages(rng, 40)
    faults = [random_fault(rng, flits) if rng.random() < 0.5 else None for flits in sent]
    expected = [flit for flits, fault in zip(sent, faults)
                for flit in apply_link_fault(flits, fault)]
    got = []
    dut = LinkFaultInjector()

    async def source(ctx):
        for flits, fault in zip(sent, faults):
            if fault is not None:
                ctx.set(dut.command.valid, 1)
                ctx.set(dut.command.payload, fault)
            for position, (data, last) in enumerate(flits):
                with waiting(ctx, f"the injector to take flit {position} of a message"):
                    await stream_put(ctx, dut.i, codec(Flit).pack(data=data, last=last))
                if position == 0:
                    ctx.set(dut.command.valid, 0)
            for _ in range(rng.randrange(3)):
                await ctx.tick()

    async def sink(ctx):
        while len(got) < len(expected):
            for _ in range(rng.randrange(2)):
                await ctx.tick()
            with waiting(ctx, f"flit {len(got)} of {len(expected)}"):
                payload = await stream_get(ctx, dut.o)
            got.append((payload.data, bool(payload.last)))
        ctx.set(dut.o.ready, 1)
        for _ in range(3 * MAX_MESSAGE_FLITS):
            *_, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, f"a flit more than the model's {len(expected)}"

    run(dut, source, sink, deadline_cycles=20_000)
    assert got == expected
    assert sum(fault is not None for fault in faults) > 10


def test_injected_counts_each_command_once_when_its_message_starts():
    dut = LinkFaultInjector()
    flits = Message(dst_node=1, src_node=0, payload=bytes(16)).flits()
    counts = []

    async def source(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.command.valid, 1)
        ctx.set(dut.command.payload, {"kind": LinkFaultKind.CORRUPT, "flit": 1, "bit": 3})
        await ctx.tick().repeat(3)              # offered before its message: not taken yet
        counts.append(ctx.get(dut.injected))
        for position, (data, last) in enumerate(flits):
            await stream_put(ctx, dut.i, codec(Flit).pack(data=data, last=last))
            if position == 0:
                ctx.set(dut.command.valid, 0)
        await ctx.tick()
        counts.append(ctx.get(dut.injected))

    run(dut, source, deadline_cycles=200)
    assert counts == [0, 1]
    assert dut.signature.members["injected"].shape == 32
