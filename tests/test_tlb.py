import random

import pytest

from behavioral.tlb import TLBModel
from rtl.layouts import TlbOp, TlbStatus, codec, tlb_command_layout, tlb_lookup_layout
from rtl.tlb import NITLB
from tests.sim import edges, run, stream_get, stream_put, tracer, transfer

RW = {"local_read": 1, "remote_write": 1}


async def command(ctx, dut, op, **fields):
    """Issue a management command and wait until it has completed."""
    await stream_put(ctx, dut.mgmt, codec(dut.mgmt.payload.shape()).pack(op=op, **fields))
    await ctx.tick().repeat(dut.MGMT_LATENCY)


async def lookup(ctx, dut, port, asid, va, key=0):
    """Return (status, ppn) of one lookup on ``port`` ("tx" or "rx")."""
    request = getattr(dut, f"{port}_request")
    await stream_put(ctx, request, codec(request.payload.shape()).pack(asid=asid, va=va, key=key))
    response = await stream_get(ctx, getattr(dut, f"{port}_response"))
    return TlbStatus(response.status), response.ppn


def test_hits_misses_and_faults():
    dut = NITLB(entries=4)
    results = []

    async def bench(ctx):
        await command(ctx, dut, TlbOp.FILL, asid=1, vpn=0x12345, ppn=0xABC,
                      perm={"remote_write": 1}, key=0x77)
        await command(ctx, dut, TlbOp.FILL, asid=2, vpn=0x12345, ppn=0xDEF,
                      perm={"local_read": 1}, key=0x11)
        va = 0x12345 << 12 | 0x9A
        results.append(await lookup(ctx, dut, "rx", 1, va, key=0x77))   # HIT
        results.append(await lookup(ctx, dut, "rx", 1, va, key=0x78))   # wrong key
        results.append(await lookup(ctx, dut, "tx", 1, va))             # no local read
        results.append(await lookup(ctx, dut, "tx", 2, va))             # HIT, other ASID's frame
        results.append(await lookup(ctx, dut, "rx", 2, va, key=0x11))   # no remote write
        results.append(await lookup(ctx, dut, "rx", 3, va, key=0x77))   # ASID 3 has no entry
        results.append(await lookup(ctx, dut, "tx", 2, va + 4096))      # next page unmapped

    run(dut, bench)
    assert results == [
        (TlbStatus.HIT, 0xABC), (TlbStatus.KEY_FAULT, 0), (TlbStatus.PERMISSION_FAULT, 0),
        (TlbStatus.HIT, 0xDEF), (TlbStatus.PERMISSION_FAULT, 0), (TlbStatus.MISS, 0),
        (TlbStatus.MISS, 0)]


def test_invalidations():
    dut = NITLB(entries=8)
    results = []

    async def bench(ctx):
        for asid, vpn in ((1, 10), (1, 11), (2, 10), (3, 10)):
            await command(ctx, dut, TlbOp.FILL, asid=asid, vpn=vpn, ppn=asid * 100 + vpn, perm=RW)
        await command(ctx, dut, TlbOp.INVALIDATE, asid=1, vpn=10)
        results.append([(await lookup(ctx, dut, "tx", a, v << 12))[0]
                        for a, v in ((1, 10), (1, 11), (2, 10), (3, 10))])
        await command(ctx, dut, TlbOp.INVALIDATE_ASID, asid=2)
        results.append([(await lookup(ctx, dut, "tx", a, v << 12))[0]
                        for a, v in ((1, 11), (2, 10), (3, 10))])
        await command(ctx, dut, TlbOp.INVALIDATE_ALL)
        results.append([(await lookup(ctx, dut, "rx", a, v << 12))[0]
                        for a, v in ((1, 11), (3, 10))])

    run(dut, bench)
    H, M = TlbStatus.HIT, TlbStatus.MISS
    assert results == [[M, H, H, H], [H, M, H], [M, M]]


def test_refill_of_a_mapped_page_rewrites_it_in_place():
    dut = NITLB(entries=2)
    results = []

    async def bench(ctx):
        await command(ctx, dut, TlbOp.FILL, asid=1, vpn=5, ppn=50, perm=RW)
        await command(ctx, dut, TlbOp.FILL, asid=1, vpn=5, ppn=51, perm=RW)
        await command(ctx, dut, TlbOp.FILL, asid=1, vpn=6, ppn=60, perm=RW)
        results.append(await lookup(ctx, dut, "tx", 1, 5 << 12))
        results.append(await lookup(ctx, dut, "tx", 1, 6 << 12))

    run(dut, bench)
    # Two entries hold both pages: the refill did not take a second entry.
    assert results == [(TlbStatus.HIT, 51), (TlbStatus.HIT, 60)]


def test_full_table_replaces_round_robin():
    dut = NITLB(entries=4)
    model = TLBModel(entries=4)
    present = []

    async def bench(ctx):
        for vpn in range(7):     # 4 fill free entries, then 3 replacements: entries 0, 1, 2
            await command(ctx, dut, TlbOp.FILL, asid=0, vpn=vpn, ppn=vpn, perm=RW)
            model.fill(0, vpn, vpn, local_read=True, remote_write=True)
        for vpn in range(7):
            present.append((await lookup(ctx, dut, "tx", 0, vpn << 12))[0] == TlbStatus.HIT)

    run(dut, bench)
    assert present == [False, False, False, True, True, True, True]
    assert present == [model.lookup(0, vpn << 12, remote=False).status == TlbStatus.HIT
                       for vpn in range(7)]


def test_one_lookup_per_cycle_answered_in_two_cycles():
    dut = NITLB(entries=4)
    lookups = codec(tlb_lookup_layout())
    accepted, answered = [], []

    async def bench(ctx):
        await command(ctx, dut, TlbOp.FILL, asid=0, vpn=1, ppn=7, perm=RW)
        ctx.set(dut.tx_response.ready, 1)
        for cycle in range(12):
            ctx.set(dut.tx_request.valid, cycle < 8)
            ctx.set(dut.tx_request.payload.as_value(), lookups.pack(asid=0, va=(cycle % 2) << 12))
            if ctx.get(dut.tx_request.valid) and ctx.get(dut.tx_request.ready):
                accepted.append(cycle)
            if ctx.get(dut.tx_response.valid):
                answered.append((cycle, TlbStatus(ctx.get(dut.tx_response.payload.status))))
            await ctx.tick()

    run(dut, bench)
    assert accepted == list(range(8))
    assert [cycle for cycle, _ in answered] == [cycle + 2 for cycle in accepted]
    assert [status for _, status in answered] == [TlbStatus.MISS, TlbStatus.HIT] * 4


def test_invalidation_kills_a_waiting_hit():
    dut = NITLB(entries=4)
    statuses = []

    async def bench(ctx):
        await command(ctx, dut, TlbOp.FILL, asid=3, vpn=9, ppn=1, perm=RW)
        # The response waits (ready low) while the entry is invalidated behind it.
        await stream_put(ctx, dut.rx_request, codec(tlb_lookup_layout()).pack(asid=3, va=9 << 12))
        await stream_put(ctx, dut.mgmt,
                         codec(tlb_command_layout()).pack(op=TlbOp.INVALIDATE, asid=3, vpn=9))
        await ctx.tick().repeat(4)
        statuses.append(TlbStatus((await stream_get(ctx, dut.rx_response)).status))

    run(dut, bench)
    assert statuses == [TlbStatus.MISS]


def test_random_against_model(seed):
    """Commands and lookups, one at a time, against the reference model: one answer per lookup,
    and no other."""
    rng = random.Random(seed)
    dut = NITLB(entries=4, asid_bits=2)
    model = TLBModel(entries=4, asid_bits=2)
    mismatches, lookups, log = [], {"tx": 0, "rx": 0}, []

    async def bench(ctx):
        for _ in range(120):
            asid, vpn = rng.randrange(4), rng.randrange(6)
            if rng.random() < 0.4:
                op = rng.choice([TlbOp.FILL] * 6 + [TlbOp.INVALIDATE] * 2
                                + [TlbOp.INVALIDATE_ASID, TlbOp.INVALIDATE_ALL])
                fields = dict(asid=asid, vpn=vpn, ppn=rng.randrange(1 << 20),
                              perm={"local_read": rng.randrange(2),
                                    "remote_write": rng.randrange(2)},
                              key=rng.randrange(3))
                await command(ctx, dut, op, **fields)
                model.execute(op, **fields)
            else:
                port, key = rng.choice(["tx", "rx"]), rng.randrange(3)
                lookups[port] += 1
                got = await lookup(ctx, dut, port, asid, vpn << 12 | rng.randrange(4096), key)
                want = model.lookup(asid, vpn << 12, remote=port == "rx", key=key)
                if got != (want.status, want.ppn):
                    mismatches.append((port, asid, vpn, key, got, want))

    run(dut, bench, tracer(log, tx=transfer(dut.tx_response), rx=transfer(dut.rx_response)),
        deadline_cycles=2000)
    assert not mismatches, f"seed {seed}: {mismatches[:3]}"
    answers = {port: len(edges(log, port)) for port in lookups}
    assert answers == lookups, f"seed {seed}: {answers} answers to {lookups} lookups"


@pytest.mark.parametrize("kwargs, error", [
    (dict(entries=1), "entries must be between 2 and 64, not 1"),
    (dict(asid_bits=0), "asid_bits must be between 1 and 16, not 0"),
])
def test_rejects_bad_parameters(kwargs, error):
    with pytest.raises(ValueError, match=error):
        NITLB(**kwargs)


from amaranth.hdl import Fragment


def test_default_parameters():
    dut = NITLB()
    assert (dut.entries, dut.asid_bits) == (32, 8)
    Fragment.get(dut, None)


def test_fill_takes_the_lowest_free_entry_before_replacing_one():
    dut = NITLB(entries=4)
    present = []

    async def bench(ctx):
        for vpn in range(4):
            await command(ctx, dut, TlbOp.FILL, asid=0, vpn=vpn, ppn=vpn, perm=RW)
        await command(ctx, dut, TlbOp.INVALIDATE, asid=0, vpn=2)
        # Page 9 takes the freed entry; page 10 then replaces the first victim, page 0.
        for vpn in (9, 10):
            await command(ctx, dut, TlbOp.FILL, asid=0, vpn=vpn, ppn=vpn, perm=RW)
        for vpn in (0, 1, 3, 9, 10):
            present.append(await lookup(ctx, dut, "tx", 0, vpn << 12))

    run(dut, bench)
    assert present == [(TlbStatus.MISS, 0)] + [(TlbStatus.HIT, vpn) for vpn in (1, 3, 9, 10)]


def test_replacement_wraps_round_robin_over_a_table_of_three():
    dut = NITLB(entries=3)
    present = []

    async def bench(ctx):
        for vpn in range(7):     # 3 fill free entries, then 4 replacements: entries 0, 1, 2, 0
            await command(ctx, dut, TlbOp.FILL, asid=0, vpn=vpn, ppn=vpn, perm=RW)
        for vpn in range(7):
            present.append((await lookup(ctx, dut, "tx", 0, vpn << 12))[0] == TlbStatus.HIT)

    run(dut, bench)
    assert present == [False, False, False, False, True, True, True]


def test_back_to_back_commands_each_see_the_writes_of_the_one_before():
    dut = NITLB(entries=4)
    commands = codec(tlb_command_layout())
    results = []

    async def bench(ctx):
        for vpn in (1, 2):      # offered on consecutive cycles: both must take a free entry
            await stream_put(ctx, dut.mgmt,
                             commands.pack(op=TlbOp.FILL, asid=0, vpn=vpn, ppn=vpn, perm=RW))
        await ctx.tick().repeat(dut.MGMT_LATENCY)
        for vpn in (1, 2):
            results.append(await lookup(ctx, dut, "tx", 0, vpn << 12))

    run(dut, bench)
    assert results == [(TlbStatus.HIT, 1), (TlbStatus.HIT, 2)]


def test_writes_while_answers_wait_make_only_their_own_entry_miss():
    dut = NITLB(entries=4)
    lookups = codec(tlb_lookup_layout())
    answers = []

    async def bench(ctx):
        for vpn in (1, 2, 3):   # entries 0, 1, 2
            await command(ctx, dut, TlbOp.FILL, asid=0, vpn=vpn, ppn=vpn, perm=RW)
        # Page 1's answer waits in the output stage and page 2's lookup behind it in the compare
        # stage (the response is not taken) while page 2's entry is invalidated.
        await stream_put(ctx, dut.tx_request, lookups.pack(asid=0, va=1 << 12))
        await stream_put(ctx, dut.tx_request, lookups.pack(asid=0, va=2 << 12))
        await command(ctx, dut, TlbOp.INVALIDATE, asid=0, vpn=2)
        await ctx.tick().repeat(2)
        for _ in range(2):
            response = await stream_get(ctx, dut.tx_response)
            answers.append((TlbStatus(response.status), response.ppn))
        # Page 3's answer waits while page 1's entry, not its own, is invalidated.
        await stream_put(ctx, dut.tx_request, lookups.pack(asid=0, va=3 << 12))
        await command(ctx, dut, TlbOp.INVALIDATE, asid=0, vpn=1)
        response = await stream_get(ctx, dut.tx_response)
        answers.append((TlbStatus(response.status), response.ppn))

    run(dut, bench)
    assert answers == [(TlbStatus.HIT, 1), (TlbStatus.MISS, 0), (TlbStatus.HIT, 3)]


def test_a_write_to_the_entry_of_an_answer_waiting_in_the_output_makes_it_miss():
    dut = NITLB(entries=4)
    answers = []

    async def bench(ctx):
        for vpn in (1, 2):      # entries 0 and 1
            await command(ctx, dut, TlbOp.FILL, asid=0, vpn=vpn, ppn=vpn, perm=RW)
        await stream_put(ctx, dut.tx_request, codec(tlb_lookup_layout()).pack(asid=0, va=2 << 12))
        await command(ctx, dut, TlbOp.INVALIDATE, asid=0, vpn=2)
        response = await stream_get(ctx, dut.tx_response)
        answers.append((TlbStatus(response.status), response.ppn))

    run(dut, bench)
    assert answers == [(TlbStatus.MISS, 0)]
