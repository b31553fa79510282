"""The transaction-level reference NI (:mod:`behavioral.refni`) against :mod:`rtl.ni`'s contract.

Each test sets up endpoints and translations through the privileged command port, as the OS
does, and drives the user page, the TX engine and the RX engine one transaction at a time. Bad
messages are made by corrupting the flits of :meth:`behavioral.message.Message.flits`.
"""

import zlib

import pytest

from behavioral.memory import SparseMemory
from behavioral.message import Message
from behavioral.refni import (ReferenceNI, ReferenceSystem, RxResult,
                              TxOutcome)
from behavioral.vm import Page
from rtl.layouts import (COMPLETION_BYTES, FLIT_BYTES, HEADER_FLITS, CompletionEntry, MessageHeader,
                         MmioStatus, NiEngine, NiFaultKind, NiOsOp, NotifyMode, SendDescriptor,
                         SendFlags, TlbOp, Trailer, TxError, UserReg, codec)

ASID = 3
THREAD = 7
WINDOW = {"local_read": 1, "remote_write": 1}
READ_ONLY = {"local_read": 1, "remote_write": 0}
NO_ACCESS = {"local_read": 0, "remote_write": 0}
KEY = 0x1234
RING_PA = 0x0020_0000
RING_VA = 0x7000_0000_0000
VA = 0x4000_0000           # a window (receiver) or a buffer (sender), page aligned
PPN = 0x300
PPN2 = 0x377               # the page after VA maps to a frame that is not the next one


def addr(endpoint, reg, word=0):
    return endpoint << 12 | (reg.value + 8 * word)


def open_endpoint(ni, index, *, asid=ASID, ring_log2=3, enabled=1):
    ni.os_command(op=NiOsOp.WRITE_ENDPOINT, index=index, endpoint={
        "enabled": enabled, "asid": asid, "thread": THREAD, "ring_log2": ring_log2,
        "ring_pa": RING_PA + 0x1000 * index, "ring_va": RING_VA + 0x1000 * index})


def fill(ni, va, ppn, perm, *, asid=ASID, key=KEY):
    ni.os_command(op=NiOsOp.TLB, tlb={"op": TlbOp.FILL, "asid": asid, "vpn": va >> 12,
                                      "ppn": ppn, "perm": perm, "key": key})


def write(ni, endpoint, reg, value, word=0, asid=ASID):
    return ni.mmio(True, asid, addr(endpoint, reg, word), value)


def read(ni, endpoint, reg, asid=ASID):
    return ni.mmio(False, asid, addr(endpoint, reg))


def post(ni, endpoint, payload=(), *, flags=0, length=None, **fields):
    """Write a descriptor (and PIO payload) into ``endpoint``'s slot and ring the doorbell."""
    fields = {"dst_node": 1, "dst_endpoint": 2, "key": KEY, "remote_va": VA, **fields}
    bits = codec(SendDescriptor).pack(
        flags=flags, length=8 * len(payload) if length is None else length, **fields)
    for word in range(4):
        assert write(ni, endpoint, UserReg.DESCRIPTOR, bits >> (64 * word) & (2**64 - 1),
                     word) == (MmioStatus.OK, 0)
    for index, value in enumerate(payload):
        assert write(ni, endpoint, UserReg.PAYLOAD, value, index) == (MmioStatus.OK, 0)
    assert write(ni, endpoint, UserReg.DOORBELL, 0) == (MmioStatus.OK, 0)


def no_memory(pa):
    raise AssertionError(f"a PIO send read memory at {pa:#x}")


def fault(kind, *, endpoint, asid=ASID, va=0, node=0):
    return {"kind": kind, "endpoint": endpoint, "asid": asid, "va": va, "node": node}


def reframe(words):
    """Return flits carrying ``words`` (header and payload) with a good CRC trailer."""
    data = b"".join(word.to_bytes(8, "little") for word in words)
    return [(word, False) for word in words] + [(codec(Trailer).pack(crc=zlib.crc32(data)), True)]


def words_of(message):
    return [data for data, _ in message.flits()[:-1]]


@pytest.fixture
def sender():
    ni = ReferenceNI(0, nodes=4)
    open_endpoint(ni, 1)
    return ni


@pytest.fixture
def receiver():
    ni = ReferenceNI(1)
    open_endpoint(ni, 2)
    fill(ni, VA, PPN, WINDOW)
    fill(ni, VA + 0x1000, PPN2, WINDOW)
    return ni


def message(**fields):
    fields = {"dst_node": 1, "src_node": 0, "dst_endpoint": 2, "src_endpoint": 1, "key": KEY,
              "remote_va": VA, "metadata": 0xABCD, "payload": bytes(range(16)), **fields}
    return Message(**fields)


# User-level MMIO ----------------------------------------------------------------------------------

@pytest.mark.parametrize("write_access, offset", [
    (False, UserReg.DESCRIPTOR.value), (False, UserReg.PAYLOAD.value + 8),
    (False, UserReg.ARM_MODE.value), (False, UserReg.ARM_STACK.value),
    (True, UserReg.STATUS.value), (True, UserReg.RING_TAIL.value),
    (True, 0x060), (False, 0x7F8), (True, UserReg.RING_HEAD.value + 4),
])
def test_mmio_bad_register(sender, write_access, offset):
    assert sender.mmio(write_access, ASID, 1 << 12 | offset, 5) == (MmioStatus.BAD_ADDRESS, 0)
    assert sender.faults == []


def test_mmio_bad_endpoint():
    ni = ReferenceNI(0, endpoints=4)
    open_endpoint(ni, 1, enabled=0)
    assert read(ni, 1, UserReg.STATUS) == (MmioStatus.BAD_ADDRESS, 0)     # disabled
    assert read(ni, 2, UserReg.STATUS) == (MmioStatus.BAD_ADDRESS, 0)     # never opened
    assert read(ni, 5, UserReg.STATUS) == (MmioStatus.BAD_ADDRESS, 0)     # no such endpoint
    assert ni.faults == []


def test_mmio_foreign_asid_is_reported_and_changes_nothing(sender):
    assert write(sender, 1, UserReg.RING_HEAD, 4, asid=9) == (MmioStatus.FOREIGN_ASID, 0)
    assert write(sender, 1, UserReg.DOORBELL, 0, asid=9) == (MmioStatus.FOREIGN_ASID, 0)
    assert read(sender, 1, UserReg.RING_HEAD, asid=9) == (MmioStatus.FOREIGN_ASID, 0)
    assert sender.ring(1) == (0, 0)
    assert sender.pending() == []
    assert sender.faults == [
        fault(NiFaultKind.FOREIGN_ASID, endpoint=1, asid=9, va=addr(1, reg))
        for reg in (UserReg.RING_HEAD, UserReg.DOORBELL, UserReg.RING_HEAD)]


def test_mmio_bad_address_wins_over_foreign_asid(sender):
    assert sender.mmio(False, 9, addr(1, UserReg.ARM_MODE), 0) == (MmioStatus.BAD_ADDRESS, 0)
    assert sender.faults == []


def test_mmio_reads(sender):
    assert read(sender, 1, UserReg.DOORBELL) == (MmioStatus.OK, 0)
    assert read(sender, 1, UserReg.STATUS) == (MmioStatus.OK, 0)
    assert write(sender, 1, UserReg.RING_HEAD, 0x1_0005) == (MmioStatus.OK, 0)
    assert read(sender, 1, UserReg.RING_HEAD) == (MmioStatus.OK, 5)
    assert read(sender, 1, UserReg.RING_TAIL) == (MmioStatus.OK, 0)


def test_slot_busy_while_send_pending(sender):
    post(sender, 1, [1, 2])
    assert sender.status(1) == {"busy": 1, "error": TxError.NONE, "sent": 0}
    assert read(sender, 1, UserReg.STATUS) == (MmioStatus.OK, 1)
    for reg in (UserReg.DESCRIPTOR, UserReg.PAYLOAD, UserReg.DOORBELL):
        assert write(sender, 1, reg, 9) == (MmioStatus.SLOT_BUSY, 0)
    assert write(sender, 1, UserReg.RING_HEAD, 1) == (MmioStatus.OK, 0)   # not the slot
    sent = sender.send_next(no_memory)
    assert sent.message.payload == (1).to_bytes(8, "little") + (2).to_bytes(8, "little")
    assert sender.status(1) == {"busy": 0, "error": TxError.NONE, "sent": 1}
    assert read(sender, 1, UserReg.STATUS) == (MmioStatus.OK, 1 << 4)   # sent=1, busy 0
    assert write(sender, 1, UserReg.DOORBELL, 0) == (MmioStatus.OK, 0)   # slot reusable


# Sending ----------------------------------------------------------------------------------------

def test_pio_send_builds_the_message(sender):
    post(sender, 1, [0x1111, 0x2222], flags=SendFlags.NOTIFY.value, dst_node=3, dst_endpoint=6,
         remote_va=VA + 0x18, metadata=0xFEED)
    assert sender.pending() == [1]
    sent = sender.send_next(no_memory)
    assert sent.endpoint == 1 and sent.error is TxError.NONE
    assert sent.message == Message(
        dst_node=3, src_node=0, dst_endpoint=6, src_endpoint=1, notify=True, seq=0, key=KEY,
        remote_va=VA + 0x18, metadata=0xFEED,
        payload=(0x1111).to_bytes(8, "little") + (0x2222).to_bytes(8, "little"))
    assert sender.send_next(no_memory) is None


def test_empty_send(sender):
    post(sender, 1, [])
    assert sender.send_next(no_memory).message.payload == b""


def test_seq_counts_per_destination_node(sender):
    seqs = []
    for dst in (1, 1, 2, 1, 2, 0):
        post(sender, 1, [dst], dst_node=dst)
        seqs.append((dst, sender.send_next(no_memory).message.seq))
    assert seqs == [(1, 0), (1, 1), (2, 0), (1, 2), (2, 1), (0, 0)]


@pytest.mark.parametrize("fields, error", [
    ({"length": 12}, TxError.BAD_LENGTH),
    ({"length": 2056}, TxError.BAD_LENGTH),
    ({"length": 12, "dst_node": 4, "flags": 0x80}, TxError.BAD_LENGTH),   # checked first
    ({"dst_node": 4}, TxError.BAD_NODE),
    ({"dst_node": 15, "flags": 0x04}, TxError.BAD_NODE),                  # before the flags
    ({"flags": 0x04}, TxError.BAD_FLAGS),
    ({"flags": 0x80 | SendFlags.NOTIFY.value}, TxError.BAD_FLAGS),
])
def test_refused_descriptor(sender, fields, error):
    post(sender, 1, [7], **fields)
    assert sender.send_next(no_memory) == TxOutcome(1, error)
    assert sender.status(1) == {"busy": 0, "error": error, "sent": 0}
    assert write(sender, 1, UserReg.DESCRIPTOR, 0) == (MmioStatus.OK, 0)   # slot reusable
    post(sender, 1, [7])
    sent = sender.send_next(no_memory)                                     # no seq consumed
    assert sent.error is TxError.NONE and sent.message.seq == 0
    assert sender.status(1) == {"busy": 0, "error": TxError.NONE, "sent": 1}


def test_doorbelled_endpoints_are_taken_round_robin():
    ni = ReferenceNI(0, nodes=4)
    for index in range(8):
        open_endpoint(ni, index)
    order = []
    for batch in ((5, 1, 3), (1, 6), (7, 0, 6)):
        for index in batch:
            post(ni, index, [index])
        while (sent := ni.send_next(no_memory)) is not None:
            order.append(sent.endpoint)
    assert order == [1, 3, 5, 6, 1, 6, 7, 0]


# DMA sends ----------------------------------------------------------------------------------------

def memory_with(words):
    memory = SparseMemory()
    for pa, value in words.items():
        memory.write_word(pa, value)
    return memory


def test_dma_send_crossing_a_page(sender):
    fill(sender, VA, PPN, READ_ONLY)
    fill(sender, VA + 0x1000, PPN2, READ_ONLY)
    memory = memory_with({PPN << 12 | 0xFF0: 1, PPN << 12 | 0xFF8: 2, PPN2 << 12: 3})
    post(sender, 1, flags=SendFlags.DMA.value, length=24, local_va=VA + 0xFF0)
    sent = sender.send_next(memory.read_word)
    assert sent.error is TxError.NONE
    assert sent.message.payload == b"".join(w.to_bytes(8, "little") for w in (1, 2, 3))
    assert sender.faults == []


def test_dma_low_va_bits_ignored_and_one_page_at_the_end(sender):
    fill(sender, VA, PPN, READ_ONLY)          # the next page is not mapped, and not needed
    memory = memory_with({PPN << 12 | 0xFF8: 9})
    post(sender, 1, flags=SendFlags.DMA.value, length=8, local_va=VA + 0xFFD)
    assert sender.send_next(memory.read_word).message.payload == (9).to_bytes(8, "little")


def test_dma_permission_fault(sender):
    fill(sender, VA, PPN, READ_ONLY)
    fill(sender, VA + 0x1000, PPN2, NO_ACCESS)
    post(sender, 1, flags=SendFlags.DMA.value, length=16, local_va=VA + 0xFF8)
    sent = sender.send_next(no_memory)
    assert (sent.error, sent.message) == (TxError.DMA_FAULT, None)
    assert sender.status(1)["error"] is TxError.DMA_FAULT
    assert sender.faults == [fault(NiFaultKind.TX_PERMISSION, endpoint=1, va=VA + 0x1000)]


def test_dma_miss_filled_from_the_page_table():
    table = {VA >> 12: Page(PPN, READ_ONLY, 0)}
    ni = ReferenceNI(0, os_translate=lambda asid, va: table.get(va >> 12))
    open_endpoint(ni, 1)
    post(ni, 1, flags=SendFlags.DMA.value, length=8, local_va=VA)
    sent = ni.send_next(memory_with({PPN << 12: 42}).read_word)
    assert sent.message.payload == (42).to_bytes(8, "little")
    assert ni.faults == [fault(NiFaultKind.TX_MISS, endpoint=1, va=VA)]
    assert ni.tlb.lookup(ASID, VA, remote=False).ppn == PPN


def test_dma_miss_rejected():
    ni = ReferenceNI(0, os_translate=lambda asid, va: None)
    open_endpoint(ni, 1)
    fill(ni, VA, PPN, READ_ONLY)
    post(ni, 1, flags=SendFlags.DMA.value, length=16, local_va=VA + 0xFF8)
    sent = ni.send_next(no_memory)
    assert (sent.error, sent.message) == (TxError.DMA_REJECTED, None)
    assert ni.faults == [fault(NiFaultKind.TX_MISS, endpoint=1, va=VA + 0x1000)]


def test_dma_miss_livelock_is_reported():
    table = {VA >> 12: Page(PPN, READ_ONLY, 0), (VA >> 12) + 1: Page(PPN2, READ_ONLY, 0)}
    ni = ReferenceNI(0, tlb_entries=1, os_translate=lambda asid, va: table.get(va >> 12))
    open_endpoint(ni, 1)
    post(ni, 1, flags=SendFlags.DMA.value, length=16, local_va=VA + 0xFF8)
    with pytest.raises(RuntimeError, match="TLB of 1 entries cannot hold"):
        ni.send_next(no_memory)


# Receiving --------------------------------------------------------------------------------------

def test_receive_delivers_payload_entry_and_completion(receiver):
    outcome = receiver.receive(message(notify=True, seq=5))
    assert outcome.result is RxResult.DELIVERED and outcome.fault is None
    assert outcome.writes == {PPN << 12: 0x0706050403020100, PPN << 12 | 8: 0x0F0E0D0C0B0A0908}
    assert outcome.entry == {
        "src_node": 0, "src_endpoint": 1, "status": outcome.entry["status"].DELIVERED,
        "reserved0": 0, "length": 16, "reserved1": 0, "seq": 5, "reserved2": 0,
        "landing_va": VA, "reserved3": 0, "metadata": 0xABCD}
    assert (outcome.entry_pa, outcome.entry_va) == (RING_PA + 0x2000, RING_VA + 0x2000)
    assert outcome.tail == 1 and receiver.ring(2) == (0, 1)
    assert outcome.completion == {"endpoint": 2, "entry": RING_VA + 0x2000}
    assert receiver.faults == []

    memory = SparseMemory()
    memory.write_word(outcome.entry_pa + 24, 0x5A)        # the stamp word is left alone
    outcome.apply(memory)
    assert memory.read_word(PPN << 12 | 8) == 0x0F0E0D0C0B0A0908
    entry = sum(memory.read_word(outcome.entry_pa + 8 * i) << (64 * i) for i in range(4))
    assert codec(CompletionEntry).unpack(entry) == {**outcome.entry, "stamp": 0x5A}


def test_receive_without_notify_has_no_completion(receiver):
    assert receiver.receive(message()).completion is None


def test_receive_crossing_a_page_with_unaligned_va(receiver):
    outcome = receiver.receive(message(remote_va=VA + 0xFFB))
    assert list(outcome.writes) == [PPN << 12 | 0xFF8, PPN2 << 12]
    assert outcome.entry["landing_va"] == VA + 0xFFB


def test_receive_empty_message_needs_no_translation():
    ni = ReferenceNI(1)
    open_endpoint(ni, 2)
    outcome = ni.receive(message(payload=b"", remote_va=0x9999_0000))
    assert outcome.result is RxResult.DELIVERED and outcome.writes == {}


def test_ring_wraps_and_holds_when_full(receiver):
    open_endpoint(receiver, 2, ring_log2=1)
    slots = [receiver.receive(message(seq=i)).entry_pa for i in range(2)]
    assert slots == [RING_PA + 0x2000, RING_PA + 0x2000 + COMPLETION_BYTES]
    tlb_before = list(receiver.tlb.table)
    held = receiver.receive(message(seq=2))
    assert held.result is RxResult.HELD and held.entry is None
    assert receiver.ring(2) == (0, 2) and receiver.tlb.table == tlb_before
    assert write(receiver, 2, UserReg.RING_HEAD, 1) == (MmioStatus.OK, 0)
    outcome = receiver.receive(message(seq=2))
    assert (outcome.entry_pa, outcome.entry_va, outcome.tail) == (
        RING_PA + 0x2000, RING_VA + 0x2000, 3)
    assert outcome.entry["seq"] == 2


def test_ring_full_counts_tail_minus_head_mod_2_16(receiver):
    open_endpoint(receiver, 2, ring_log2=0)
    assert write(receiver, 2, UserReg.RING_HEAD, 0xFFFF) == (MmioStatus.OK, 0)
    assert receiver.receive(message()).result is RxResult.HELD     # 0 - 0xFFFF = 1 = size
    assert write(receiver, 2, UserReg.RING_HEAD, 0) == (MmioStatus.OK, 0)
    assert receiver.receive(message()).entry_pa == RING_PA + 0x2000


def test_write_endpoint_restarts_the_ring(receiver):
    receiver.receive(message())
    write(receiver, 2, UserReg.RING_HEAD, 1)
    open_endpoint(receiver, 2)
    assert receiver.ring(2) == (0, 0)


def test_message_round_trips_through_send_and_receive(sender, receiver):
    post(sender, 1, [3, 4], dst_endpoint=2, remote_va=VA + 8)
    sent = sender.send_next(no_memory).message
    outcome = receiver.receive(sent.flits())
    assert outcome.writes == {PPN << 12 | 8: 3, PPN << 12 | 16: 4}


# Receive faults (each: discarded, nothing written, reported) --------------------------------------

def corrupt(words, index, bit):
    return [(word ^ (1 << bit) if i == index else word, False) for i, word in enumerate(words)]


def discarded(ni, flits, kind, **fields):
    outcome = ni.receive(flits)
    assert (outcome.result, outcome.fault, outcome.writes, outcome.entry) == (
        RxResult.DISCARDED, kind, {}, None)
    assert ni.faults[-1] == fault(kind, **fields)
    assert ni.ring(2) == (0, 0)


def test_bad_crc(receiver):
    flits = message().flits()
    flits[HEADER_FLITS] = (flits[HEADER_FLITS][0] ^ 4, False)
    discarded(receiver, flits, NiFaultKind.BAD_CRC, endpoint=2)


def test_bad_crc_wins_over_a_bad_header(receiver):
    flits = message().flits()
    flits[0] = (codec(MessageHeader).pack(dst_node=5, dst_endpoint=2) | (flits[0][0] & ~0xF), False)
    discarded(receiver, flits, NiFaultKind.BAD_CRC, endpoint=2)


def test_bad_trailer(receiver):
    flits = message().flits()
    flits[-1] = (flits[-1][0] ^ 1, True)
    discarded(receiver, flits, NiFaultKind.BAD_CRC, endpoint=2)


def test_lost_last_runs_into_the_next_message(receiver):
    first, second = message().flits(), message(seq=1).flits()
    flits = first[:-1] + [(first[-1][0], False)] + second
    discarded(receiver, flits, NiFaultKind.BAD_CRC, endpoint=2)


@pytest.mark.parametrize("keep", [1, 2, HEADER_FLITS, HEADER_FLITS + 1])
def test_truncated(receiver, keep):
    words = words_of(message(payload=bytes(24)))[:keep]
    discarded(receiver, reframe(words), NiFaultKind.TRUNCATED, endpoint=2)


def test_short_message_keeps_the_header_before_it(receiver):
    open_endpoint(receiver, 0, asid=5)
    receiver.receive(message(dst_endpoint=3))         # BAD_ENDPOINT; its header is kept
    # A lone trailer (the CRC of nothing is 0): the header is the one before, the endpoint entry
    # the one the trailer's data names as a first flit (endpoint 0).
    discarded(receiver, [(codec(Trailer).pack(crc=0), True)], NiFaultKind.TRUNCATED, endpoint=3,
              asid=5)


def test_too_long(receiver):
    words = words_of(message()) + [0]
    discarded(receiver, reframe(words), NiFaultKind.TRUNCATED, endpoint=2)


@pytest.mark.parametrize("fields", [{"dst_node": 0}, {"kind": 1}, {"length": 12},
                                    {"length": 2056}])
def test_bad_header(receiver, fields):
    fields = {"dst_node": 1, "dst_endpoint": 2, "key": KEY, "remote_va": VA, **fields}
    header = codec(MessageHeader).pack(**fields)
    words = [header >> (64 * i) & (2**64 - 1) for i in range(HEADER_FLITS)]
    words += [0] * (fields.get("length", 0) // FLIT_BYTES)
    discarded(receiver, reframe(words), NiFaultKind.BAD_HEADER, endpoint=2)


def test_bad_endpoint(receiver):
    discarded(receiver, message(dst_endpoint=8).flits(), NiFaultKind.BAD_ENDPOINT,
              endpoint=8, asid=0)
    discarded(receiver, message(dst_endpoint=3).flits(), NiFaultKind.BAD_ENDPOINT, endpoint=3,
              asid=0)
    open_endpoint(receiver, 4, enabled=0)
    discarded(receiver, message(dst_endpoint=4).flits(), NiFaultKind.BAD_ENDPOINT, endpoint=4)


def test_wrong_key(receiver):
    discarded(receiver, message(key=KEY + 1).flits(), NiFaultKind.RX_KEY, endpoint=2, va=VA)


def test_no_remote_write_on_the_second_page(receiver):
    fill(receiver, VA + 0x1000, PPN2, READ_ONLY)
    discarded(receiver, message(remote_va=VA + 0xFF8).flits(), NiFaultKind.RX_PERMISSION,
              endpoint=2, va=VA + 0x1000)


def test_rx_miss_filled_from_the_page_table():
    table = {VA >> 12: Page(PPN, WINDOW, KEY)}
    ni = ReferenceNI(1, os_translate=lambda asid, va: table.get(va >> 12) if asid == ASID
                     else None)
    open_endpoint(ni, 2)
    outcome = ni.receive(message())
    assert outcome.result is RxResult.DELIVERED and PPN << 12 in outcome.writes
    assert ni.faults == [fault(NiFaultKind.RX_MISS, endpoint=2, va=VA)]


def test_rx_miss_then_key_fault_after_the_fill():
    ni = ReferenceNI(1, os_translate=lambda asid, va: Page(PPN, WINDOW, KEY + 1))
    open_endpoint(ni, 2)
    outcome = ni.receive(message())
    assert outcome.result is RxResult.DISCARDED and outcome.fault is NiFaultKind.RX_KEY
    assert [f["kind"] for f in ni.faults] == [NiFaultKind.RX_MISS, NiFaultKind.RX_KEY]


def test_rx_miss_rejected_writes_an_error_entry(receiver):
    receiver.os_command(op=NiOsOp.TLB, tlb={"op": TlbOp.INVALIDATE, "asid": ASID,
                                            "vpn": (VA >> 12) + 1})
    outcome = receiver.receive(message(remote_va=VA + 0xFF8, notify=True))
    assert outcome.result is RxResult.REJECTED and outcome.fault is NiFaultKind.RX_REJECTED
    assert outcome.writes == {}
    assert outcome.entry["status"].name == "REJECTED"
    assert outcome.entry["landing_va"] == VA + 0xFF8 and outcome.entry["length"] == 16
    assert outcome.completion == {"endpoint": 2, "entry": RING_VA + 0x2000}
    assert receiver.faults == [fault(NiFaultKind.RX_MISS, endpoint=2, va=VA + 0x1000),
                               fault(NiFaultKind.RX_REJECTED, endpoint=2, va=VA)]


def test_rejected_message_is_held_while_the_ring_is_full(receiver):
    open_endpoint(receiver, 2, ring_log2=0)
    receiver.receive(message())
    assert receiver.receive(message(remote_va=0x9000_0000)).result is RxResult.HELD
    assert receiver.faults == []                     # reported when it is taken
    write(receiver, 2, UserReg.RING_HEAD, 1)
    assert receiver.receive(message(remote_va=0x9000_0000)).result is RxResult.REJECTED
    assert [f["kind"] for f in receiver.faults] == [NiFaultKind.RX_MISS,
                                                    NiFaultKind.RX_REJECTED]


def test_discard_wins_over_a_full_ring(receiver):
    open_endpoint(receiver, 2, ring_log2=0)
    receiver.receive(message())
    assert receiver.receive(message(key=0)).result is RxResult.DISCARDED


def test_receive_needs_exactly_one_last_at_the_end(receiver):
    flits = message().flits()
    with pytest.raises(ValueError, match="'last' set on its final flit only"):
        receiver.receive(flits[:-1])
    with pytest.raises(ValueError, match=r"positions \[3, 5\]"):
        receiver.receive(flits[:3] + [(flits[3][0], True)] + flits[4:])


# Arming and privileged commands -------------------------------------------------------------------

def test_arming_writes_the_notifier_entry(receiver):
    for reg, value in ((UserReg.ARM_LOCK, 0x5000), (UserReg.ARM_HANDLER, 0x6000),
                       (UserReg.ARM_STACK, 0x7000)):
        assert write(receiver, 2, reg, value) == (MmioStatus.OK, 0)
    assert receiver.notifier.endpoint(2)["mode"] is NotifyMode.NONE     # not before ARM_MODE
    assert write(receiver, 2, UserReg.ARM_MODE, NotifyMode.SPAWN.value) == (MmioStatus.OK, 0)
    assert receiver.notifier.endpoint(2) == {
        "mode": NotifyMode.SPAWN, "asid": ASID, "thread": THREAD, "lock": 0x5000,
        "handler_pc": 0x6000, "stack": 0x7000}


def test_arm_mode_refuses_a_value_that_is_no_mode(receiver):
    write(receiver, 2, UserReg.ARM_MODE, NotifyMode.LOCK.value)
    for value in (5, 1 << 63 | NotifyMode.BRANCH.value):
        assert write(receiver, 2, UserReg.ARM_MODE, value) == (MmioStatus.BAD_ADDRESS, 0)
    assert receiver.notifier.endpoint(2)["mode"] is NotifyMode.LOCK
    assert write(receiver, 2, UserReg.ARM_MODE, NotifyMode.INTERRUPT.value) == (MmioStatus.OK, 0)
    assert receiver.notifier.endpoint(2)["mode"] is NotifyMode.INTERRUPT


def test_write_endpoint_disarms_but_keeps_the_arm_registers(receiver):
    write(receiver, 2, UserReg.ARM_LOCK, 0x5000)
    write(receiver, 2, UserReg.ARM_MODE, NotifyMode.LOCK.value)
    open_endpoint(receiver, 2, asid=4)
    assert receiver.notifier.endpoint(2) == {"mode": NotifyMode.NONE, "asid": 4,
                                             "thread": THREAD, "lock": 0, "handler_pc": 0,
                                             "stack": 0}
    write(receiver, 2, UserReg.ARM_MODE, NotifyMode.LOCK.value, asid=4)
    assert receiver.notifier.endpoint(2)["lock"] == 0x5000
    assert receiver.notifier.completion(2, 0).signal == {"asid": 4, "addr": 0x5000}


def test_write_context_and_miss_answer(receiver):
    receiver.os_command(op=NiOsOp.WRITE_CONTEXT, index=1,
                        context={"busy": 1, "evictable": 1, "thread": 9})
    assert receiver.notifier.context(1) == {"busy": 1, "evictable": 1, "thread": 9}
    table = list(receiver.tlb.table)
    receiver.os_command(op=NiOsOp.MISS_ANSWER, engine=NiEngine.RX, reject=1)
    assert receiver.tlb.table == table


def test_commands_beyond_the_tables_change_nothing():
    ni = ReferenceNI(1, endpoints=2, contexts=2)
    ni.os_command(op=NiOsOp.WRITE_ENDPOINT, index=5, endpoint={"enabled": 1})
    ni.os_command(op=NiOsOp.WRITE_CONTEXT, index=5, context={"busy": 1})
    assert [ni.endpoint(i)["enabled"] for i in range(2)] == [0, 0]


def test_tlb_invalidate_asid(receiver):
    receiver.os_command(op=NiOsOp.TLB, tlb={"op": TlbOp.INVALIDATE_ASID, "asid": ASID})
    assert receiver.receive(message()).result is RxResult.REJECTED      # no os_translate


def test_os_command_rejects_bad_fields(receiver):
    with pytest.raises(ValueError, match="unknown field 'bogus'"):
        receiver.os_command(op=NiOsOp.TLB, bogus=1)


@pytest.mark.parametrize("kwargs, text", [
    ({"node": 2}, "node 2 must be an integer 0 .. 1"),
    ({"node": 0, "nodes": 17}, "nodes 17 must be an integer 2 .. 16"),
    ({"node": 0, "endpoints": 0}, "endpoints 0 must be"),
    ({"node": 0, "os_translate": 5}, "os_translate 5 must be callable"),
])
def test_bad_parameters(kwargs, text):
    with pytest.raises((ValueError, TypeError), match=text):
        ReferenceNI(**kwargs)


def test_bad_memory_word(sender):
    fill(sender, VA, PPN, READ_ONLY)
    post(sender, 1, flags=SendFlags.DMA.value, length=8, local_va=VA)
    with pytest.raises(ValueError, match="must return a 64-bit unsigned integer"):
        sender.send_next(lambda pa: -1)


# The reference system (fast mode) ---------------------------------------------------------------

def test_reference_system_delivers_everything_sent():
    system = ReferenceSystem(3)
    for node, ni in enumerate(system.nis):
        open_endpoint(ni, 1, ring_log2=0)
        open_endpoint(ni, 2)
        fill(ni, VA, PPN, WINDOW)
    system.memories[0].write_word(PPN << 12 | 0x100, 77)
    post(system.nis[0], 1, [5], dst_node=2)
    post(system.nis[0], 2, flags=SendFlags.DMA.value, length=8, local_va=VA + 0x100,
         dst_node=1, remote_va=VA + 0x40)
    post(system.nis[1], 1, [6], dst_node=2, dst_endpoint=1, remote_va=VA + 8)
    post(system.nis[1], 2, [7], dst_node=2, dst_endpoint=1, remote_va=VA + 16)
    outcomes = system.run()
    assert system.memories[2].read_word(PPN << 12) == 5
    assert system.memories[1].read_word(PPN << 12 | 0x40) == 77
    assert system.memories[2].read_word(PPN << 12 | 8) == 6
    # Node 2's endpoint 1 has a ring of one entry: the second message to it waits.
    assert system.memories[2].read_word(PPN << 12 | 16) == 0
    assert [m.seq for m in system.links[2]] == [1]
    assert len(outcomes) == 4 + 3
    write(system.nis[2], 1, UserReg.RING_HEAD, 1)
    assert [o.result for _, o in system.run()] == [RxResult.DELIVERED]
    assert system.memories[2].read_word(PPN << 12 | 16) == 7


def test_reference_system_parameters():
    with pytest.raises(ValueError, match="memories has 1 items; give one per node"):
        ReferenceSystem(2, memories=[SparseMemory()])
    assert ReferenceSystem(4, endpoints=2).nis[3].endpoints == 2

