import zlib

import pytest
from amaranth.lib import crc

from behavioral.message import Message, MessageError
from rtl.layouts import FLIT_DATA_BITS, HEADER_FLITS, Flit, MessageHeader, MessageKind, codec


def test_codec_round_trip_matches_amaranth_const():
    fields = dict(dst_node=3, src_node=12, dst_endpoint=7, kind=MessageKind.PUT, notify=1,
                  length=2048, seq=0xBEEF, key=0x1234, remote_va=0xFFFF_1234_5678,
                  metadata=2**64 - 1)
    bits = codec(MessageHeader).pack(**fields)
    assert bits == MessageHeader.const(fields).as_bits()
    unpacked = codec(MessageHeader).unpack(bits)
    for name, value in fields.items():
        assert unpacked[name] == value


def test_codec_rejects_unknown_field_and_overflow():
    flit = codec(Flit)
    with pytest.raises(ValueError, match="unknown field 'date'"):
        flit.pack(date=1)
    with pytest.raises(ValueError, match="'last' is 1 bits wide"):
        flit.pack(last=2)


def test_routing_field_is_in_first_flit():
    bits = codec(MessageHeader).pack(dst_node=9)
    assert bits >> FLIT_DATA_BITS == 0
    assert codec(MessageHeader).field(bits & ((1 << FLIT_DATA_BITS) - 1), "dst_node") == 9


def test_trailer_crc_is_amaranth_crc32():
    data = bytes(range(40))
    assert zlib.crc32(data) == crc.catalog.CRC32_ETHERNET(8).compute(data)


def test_message_round_trip_and_errors():
    message = Message(dst_node=1, src_node=0, seq=5, key=7, remote_va=0x1000, metadata=42,
                      payload=bytes(range(16)))
    flits = message.flits()
    assert len(flits) == HEADER_FLITS + 2 + 1
    assert [last for _, last in flits] == [False] * (len(flits) - 1) + [True]
    assert Message.from_flits(flits) == message
    corrupted = list(flits)
    corrupted[3] = (corrupted[3][0] ^ 1, False)
    with pytest.raises(MessageError, match="CRC"):
        Message.from_flits(corrupted)
    with pytest.raises(MessageError, match="flits"):
        Message.from_flits(flits[:-2] + flits[-1:])
    with pytest.raises(MessageError, match="multiple of 8"):
        Message(dst_node=0, src_node=0, payload=b"abc")


from amaranth.lib import data

from rtl.layouts import (KEY_BITS, LINE_WORDS, PPN_BITS, VA_BITS, VPN_BITS, Codec, EndpointEntry,
                         MsgBufTxOp, NiEngine, NiOsOp, NotifierCommandOp, NotifierContext,
                         NotifierEndpoint, TlbOp, TlbPermissions, TlbResponse, TlbStatus,
                         msgbuf_line_index_layout, msgbuf_tx_command_layout, ni_os_command_layout,
                         notifier_command_layout, tlb_command_layout, tlb_entry_layout,
                         tlb_lookup_layout)


def test_codec_of_a_layout_with_enum_and_layout_fields():
    # Codec itself, not codec(): the shared codecs of a process are made once, before any test.
    layout = tlb_entry_layout(asid_bits=4)
    entry = Codec(layout)
    fields = dict(valid=0, asid=9, vpn=0x12345, ppn=0x6788, key=0xABCD,
                  perm=dict(local_read=1, remote_write=0))
    bits = entry.pack(**fields)
    assert bits == layout.const(fields).as_bits() and entry.width == layout.size
    assert entry.unpack(bits) == fields
    assert entry.field(bits, "ppn") == 0x6788 and entry.field(bits, "asid") == 9
    assert entry.pack() == 0
    assert entry.unpack(0) == dict(valid=0, asid=0, vpn=0, ppn=0, key=0,
                                   perm=dict(local_read=0, remote_write=0))
    with pytest.raises(ValueError, match="wider than the"):
        entry.unpack(1 << layout.size)
    response = Codec(TlbResponse)
    assert response.unpack(response.pack(status=TlbStatus.KEY_FAULT, ppn=5)) == \
        dict(status=TlbStatus.KEY_FAULT, ppn=5)


def test_layout_functions_put_their_parameters_in_their_fields():
    assert tlb_entry_layout(asid_bits=5) == data.StructLayout({
        "valid": 1, "asid": 5, "vpn": VPN_BITS, "ppn": PPN_BITS, "perm": TlbPermissions,
        "key": KEY_BITS})
    assert tlb_lookup_layout(asid_bits=5) == data.StructLayout({
        "asid": 5, "va": VA_BITS, "key": KEY_BITS})
    assert tlb_command_layout(asid_bits=5) == data.StructLayout({
        "op": TlbOp, "asid": 5, "vpn": VPN_BITS, "ppn": PPN_BITS, "perm": TlbPermissions,
        "key": KEY_BITS})
    assert msgbuf_line_index_layout(lines=12) == data.StructLayout({"line": 4})
    assert msgbuf_tx_command_layout(lines=12) == data.StructLayout({
        "op": MsgBufTxOp, "line": 4, "word": range(LINE_WORDS), "data": FLIT_DATA_BITS})
    assert ni_os_command_layout(asid_bits=5) == data.StructLayout({
        "op": NiOsOp, "index": 4, "endpoint": EndpointEntry, "tlb": tlb_command_layout(5),
        "context": NotifierContext, "engine": NiEngine, "reject": 1, "value": 16})
    # The index is as wide as the larger table needs, and at least a bit wide.
    for endpoints, contexts, index_bits in ((1, 1, 1), (9, 3, 4), (3, 6, 3)):
        assert notifier_command_layout(endpoints, contexts) == data.StructLayout({
            "op": NotifierCommandOp, "index": index_bits, "endpoint": NotifierEndpoint,
            "context": NotifierContext})
