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
