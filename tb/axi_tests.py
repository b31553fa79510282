"""cocotb tests of the NI's AXI shell (run them with ``smtni sim ni_axi``): two nodes, every port
driven by cocotbext-axi, the reference NI as scoreboard (:mod:`tb.axi_tb`).

The knobs (``--param NAME=VALUE``) and their defaults are in :mod:`tb.testbenches`.
"""

import cocotb
from cocotb.triggers import ClockCycles
from cocotbext.axi.constants import AxiResp as BusResp

from rtl.layouts import (FLIT_BYTES, LINE_BYTES, PAGE_BITS, HandlerReturn, HandlerReturnOp,
                         LockOp, LockReleased, LockStatus, NiFaultKind, NiOsOp, NotifyEvent,
                         NotifyMode, OsReg, SendFlags, TlbOp, UserReg)

from .axi_tb import AxiNodesTB, axis_pack, axis_unpack
from .component_tb import knobs, seed_for
from .runner import record_result

#: Each node's process: its ASID, the thread that owns its endpoints (resident in context 0) and
#: the thread a SPAWN starts.
_ASID = {0: 3, 1: 4}
_THREAD, _SPAWNED = 5, 9
#: Endpoint 0 sends; endpoint ``1 + i`` receives in mode ``_MODES[i]``.
_MODES = (NotifyMode.NONE, NotifyMode.LOCK, NotifyMode.BRANCH, NotifyMode.SPAWN,
          NotifyMode.INTERRUPT)
_KEY = 0x5A5A
#: Where things are: each endpoint's ring (4 KiB apart), receive window (4 pages apart) and the
#: sender's DMA source, as VAs and PAs.
_RING_PA, _RING_VA = 0x10_0000, 0x7F00_0000_0000
_WINDOW_PA, _WINDOW_VA = 0x20_0000, 0x1000_0000_0000
_SOURCE_PA, _SOURCE_VA = 0x40_0000, 0x2000_0000_0000
_WINDOW_PAGES = 4
_RING_LOG2 = 4
_HANDLER_PC, _STACK = 0x40_1000, 0x7FFF_0000
#: Reads of RING_TAIL a polling receiver makes before it gives up.
_POLLS = 500


async def _set_up(tb):
    """Give both nodes their endpoints, rings, windows, contexts and armed modes, through the OS
    and user pages."""
    for node in tb.nodes:
        asid = _ASID[node.index]
        for endpoint in range(1 + len(_MODES)):
            await node.os_command(op=NiOsOp.WRITE_ENDPOINT, index=endpoint, endpoint=dict(
                enabled=1, asid=asid, thread=_SPAWNED if endpoint == 1 + _MODES.index(
                    NotifyMode.SPAWN) else _THREAD, ring_log2=_RING_LOG2,
                ring_pa=_RING_PA + (endpoint << PAGE_BITS),
                ring_va=_RING_VA + (endpoint << PAGE_BITS)))
        for page in range(len(_MODES) * _WINDOW_PAGES):
            await node.os_command(op=NiOsOp.TLB, tlb=dict(
                op=TlbOp.FILL, asid=asid, vpn=(_WINDOW_VA >> PAGE_BITS) + page,
                ppn=(_WINDOW_PA >> PAGE_BITS) + page, perm=dict(remote_write=1), key=_KEY))
        for page in range(2):
            await node.os_command(op=NiOsOp.TLB, tlb=dict(
                op=TlbOp.FILL, asid=asid, vpn=(_SOURCE_VA >> PAGE_BITS) + page,
                ppn=(_SOURCE_PA >> PAGE_BITS) + page, perm=dict(local_read=1)))
        # Context 0 runs the endpoints' thread; the others are free for SPAWN.
        for context in range(tb.params.get("contexts", 4)):
            await node.os_command(op=NiOsOp.WRITE_CONTEXT, index=context, context=dict(
                busy=int(context == 0), evictable=0, thread=_THREAD if context == 0 else 0))
        for position, mode in enumerate(_MODES):
            endpoint = 1 + position
            for register, value in ((UserReg.ARM_LOCK, _lock_va(node.index, endpoint)),
                                    (UserReg.ARM_HANDLER, _HANDLER_PC),
                                    (UserReg.ARM_STACK, _STACK),
                                    (UserReg.ARM_MODE, mode.value)):
                await node.mmio(1, asid, endpoint, register.value, value)


def _lock_va(node, endpoint):
    return 0x3000_0000_0000 + (node << 16) + (endpoint << 6)


def _window(position):
    return _WINDOW_VA + ((position * _WINDOW_PAGES) << PAGE_BITS)


async def _deliver(tb, sender, receiver, mode, length, offset, dma, rng):
    """Send one message from ``sender`` to the endpoint of ``mode`` on ``receiver``, wait for
    its notification as that mode gives it, and read the message and its entry."""
    position = _MODES.index(mode)
    endpoint = 1 + position
    asid = _ASID[receiver.index]
    words = [rng.getrandbits(64) for _ in range(length // FLIT_BYTES)]
    lock_va = _lock_va(receiver.index, endpoint)
    if mode is NotifyMode.LOCK:
        answer = await receiver.lock(LockOp.WAIT, asid, lock_va, _THREAD)
        tb.check(answer["status"] is LockStatus.BLOCKED, f"WAIT answered {answer}")
    descriptor = dict(dst_node=receiver.index, dst_endpoint=endpoint,
                      flags=SendFlags.NOTIFY.value | (SendFlags.DMA.value if dma else 0),
                      length=length, key=_KEY, remote_va=_window(position) + offset,
                      local_va=_SOURCE_VA + 8 * rng.randrange(64), metadata=rng.getrandbits(64))
    source_pa = _SOURCE_PA + (descriptor["local_va"] - _SOURCE_VA)
    await tb.send(sender, _ASID[sender.index], 0, descriptor, () if dma else words,
                  dma_words=words if dma else None, local_pa=source_pa)
    # (the model takes the message as the testbench's link hands it over)
    await tb.wait_until(lambda: not sender.sends, 5000,
                        lambda: f"node {sender.index}'s message to leave")
    if mode is NotifyMode.NONE:
        _, tail = receiver.model.ring(endpoint)
        for _ in range(_POLLS):
            seen = await receiver.mmio(0, asid, endpoint, UserReg.RING_TAIL.value, exact=False)
            if seen == tail:
                break
        tb.check(seen == tail, f"node {receiver.index}: tail {seen} after {_POLLS} polls, the "
                 f"model's {tail}")
    elif mode is NotifyMode.LOCK:
        seen = axis_unpack(LockReleased, await receiver.answer(
            receiver.streams["lock_released"].recv(), "lock_released"))
        kind, expected = receiver.notifications.popleft()
        tb.check(kind == "signal" and seen == dict(context=0, thread=_THREAD, **expected),
                 f"node {receiver.index}: released {seen}, the model signalled {expected}")
    elif mode in (NotifyMode.BRANCH, NotifyMode.SPAWN):
        seen = axis_unpack(NotifyEvent, await receiver.answer(
            receiver.streams["notify"].recv(), "notify"))
        kind, expected = receiver.notifications.popleft()
        tb.check(kind == "event" and seen == expected,
                 f"node {receiver.index}: notified {seen}, the model {expected}")
        op = HandlerReturnOp.RETURN if mode is NotifyMode.BRANCH else HandlerReturnOp.EXIT
        await receiver.streams["handler_return"].send(axis_pack(
            HandlerReturn, op=op, endpoint=endpoint, context=seen["context"]))
        result = receiver.model.notifier.handler_return(op, endpoint, seen["context"])
        tb.check(result.event is None, f"a handler return released {result.event}")
    else:
        await tb.wait_until(receiver.irq, 5000, lambda: f"node {receiver.index}'s irq")
        seen = await receiver.take_event(OsReg.NOTIFY_EVENT)
        kind, expected = receiver.notifications.popleft()
        tb.check(kind == "os_event" and seen == expected,
                 f"node {receiver.index}: OS event {seen}, the model {expected}")
    # The receiver reads the message and its entry, as notified: all there, nothing stale.
    await tb.check_lines(receiver, receiver.written)
    _, tail = receiver.model.ring(endpoint)
    await receiver.mmio(1, asid, endpoint, UserReg.RING_HEAD.value, tail)


@cocotb.test()
async def messages_in_every_mode(dut):
    """Both nodes send to each other into every mode, PIO and DMA, short and long, aligned and
    not: every message as predicted on the link, every notification as the model gives it,
    every word the model wrote read back through the core's path, the counters equal, nothing
    left over."""
    options = knobs("ni_axi")
    tb = AxiNodesTB(dut, seed=seed_for("messages_in_every_mode"))
    await tb.start()
    await _set_up(tb)
    rng = tb.rng
    lengths = [8, 64, 200, 2048][:options["lengths"]]
    sent = {node.index: 0 for node in tb.nodes}
    count = 0
    for mode in _MODES:
        for length in lengths:
            for dma in (False, True):
                sender, receiver = tb.nodes[count % 2], tb.nodes[1 - count % 2]
                offset = 0 if length == 2048 else FLIT_BYTES * rng.randrange(LINE_BYTES // 8 * 3)
                await _deliver(tb, sender, receiver, mode, length, offset, dma, rng)
                sent[sender.index] += 1
                count += 1
    await tb.settle()
    await tb.check_memory()
    compared = tb.compared
    for node in tb.nodes:
        counters = await node.counters()
        received = count - sent[node.index]
        tb.check(counters["tx_sent"] == sent[node.index] and counters["rx_delivered"] == received,
                 f"node {node.index}: counters {counters}, sent {sent[node.index]}, received "
                 f"{received}")
        tb.check(counters["axi_errors"] == 0, f"node {node.index}: AXI errors")
        tb.check(not node.irq() and node.model.faults == [],
                 f"node {node.index}: irq {node.irq()}, faults {node.model.faults}")
    left = tb.leftovers()
    assert not left, left
    assert not tb.mismatches, tb.mismatches[:5]
    assert tb.forwarded == count and compared >= 2 * count
    record_result("messages_in_every_mode", {
        "messages": count, "words_compared": compared, "mismatches": len(tb.mismatches),
        "coherence_requests": sum(node.coherence_requests for node in tb.nodes),
        "dirty_answers": sum(node.dirty_answers for node in tb.nodes),
        "memory_reads": sum(node.memory_reads for node in tb.nodes),
        "memory_writes": sum(node.memory_writes for node in tb.nodes),
        **tb.speed()})


@cocotb.test()
async def bus_errors(dut):
    """Accesses the shell refuses (strobes not all set, an address not a whole word, no register
    there, a register that cannot be written or read) answer SLVERR and change nothing; the NI's
    own refusals (BAD_ADDRESS, FOREIGN_ASID) answer SLVERR with the NI's effects, the fault read
    from the OS page as the model reported it."""
    tb = AxiNodesTB(dut, seed=seed_for("bus_errors"))
    await tb.start()
    await _set_up(tb)
    node = tb.nodes[0]
    asid, endpoint = _ASID[0], 1
    ring_head = asid << 16 | endpoint << PAGE_BITS | UserReg.RING_HEAD.value
    before = await node.counters()
    # The shell's own refusals: the NI sees nothing.
    resp = (await node.user.write(ring_head, b"\x07\x00\x00\x00")).resp
    tb.check(resp == BusResp.SLVERR, f"a 4-byte write answered {resp!r}")
    resp = (await node.user.write(ring_head + 2, (9).to_bytes(8, "little"))).resp
    tb.check(resp == BusResp.SLVERR, f"an unaligned write (two partial words) answered {resp!r}")
    await node.mmio(0, asid, endpoint, UserReg.RING_HEAD.value)     # still the model's 0
    # The NI's refusals: no register, a write-only register read, a foreign ASID.
    await node.mmio(0, asid, endpoint, 0x060)
    await node.mmio(0, asid, endpoint, UserReg.ARM_LOCK.value)
    await node.mmio(1, asid, endpoint, UserReg.ARM_MODE.value, 7)
    await node.mmio(1, asid + 1, endpoint, UserReg.RING_HEAD.value, 3)
    await tb.wait_until(node.irq, 100, lambda: "the FOREIGN_ASID fault's irq")
    fault = await node.take_event(OsReg.FAULT)
    tb.check(fault == node.model.faults[-1] and fault["kind"] is NiFaultKind.FOREIGN_ASID,
             f"fault {fault}, the model {node.model.faults}")
    tb.check(await node.take_event(OsReg.FAULT) is None and not node.irq(),
             "a second fault, or irq still high")
    await node.mmio(0, asid, endpoint, UserReg.RING_HEAD.value)
    # The OS page.
    await node.os_write(OsReg.COMMAND.value, 0, expect=BusResp.SLVERR,
                        data=b"\xff\xff\xff\xff")
    word = await node.os_read(OsReg.COMMAND.value)
    await node.os_read(OsReg.ISSUE.value, expect=BusResp.SLVERR)
    await node.os_write(OsReg.PENDING.value, 1, expect=BusResp.SLVERR)
    await node.os_write(OsReg.COUNTERS.value, 1, expect=BusResp.SLVERR)
    await node.os_read(0x800, expect=BusResp.SLVERR)
    tb.check(await node.os_read(OsReg.COMMAND.value) == word,
             "a refused write changed the command")
    tb.check(await node.os_read(OsReg.PENDING.value) == 0, "events pending")
    after = await node.counters()
    tb.check(after == before, f"counters moved: {before} -> {after}")
    await ClockCycles(dut.clk, 20)
    assert not tb.leftovers(), tb.leftovers()
    assert not tb.mismatches, tb.mismatches[:5]
    record_result("bus_errors", {"mismatches": len(tb.mismatches), **tb.speed()})
