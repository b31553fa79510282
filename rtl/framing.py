from amaranth import *
from amaranth.lib import crc, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (FLIT_BYTES, FLIT_DATA_BITS, HEADER_FLITS, LENGTH_BITS, Flit, MessageHeader,
                      Trailer)

__all__ = ["MessageFramer"]

#: The link's CRC: CRC-32 (Ethernet, reflected) a flit at a time. With reflected input, a 64-bit
#: word is taken least significant bit first, which is byte 0 first: the byte order of the link.
LINK_CRC = crc.catalog.CRC32_ETHERNET(data_width=FLIT_DATA_BITS)


class MessageFramer(wiring.Component):
    """Turns a message header and its payload words into the flits of one message on a link.

    The flits are the :data:`rtl.layouts.MessageHeader` (:data:`rtl.layouts.HEADER_FLITS` flits,
    least significant first), the payload words (``length / 8`` of them, taken from
    ``payload``), and the :data:`rtl.layouts.Trailer` with the CRC-32 of header and payload;
    ``last`` marks the trailer. One flit per cycle while ``flits`` is ready: a message of ``n``
    payload words takes ``HEADER_FLITS + n + 1`` cycles, and the next header is taken with the
    trailer's transfer, so messages follow each other with no idle cycle.

    The payload's length is the header's ``length`` rounded down to whole words; a header whose
    length is not a multiple of 8 bytes is the sender's error, and its last partial word is not
    sent (the TX engine rejects such descriptors before they reach the framer).

    Members
    -------
    header : In(stream.Signature(MessageHeader))
        One transfer per message, taken when the framer is idle or sends the trailer before.
    payload : In(stream.Signature(FLIT_DATA_BITS))
        The payload's words in order; taken one per flit sent.
    flits : Out(stream.Signature(Flit))
    """

    def __init__(self):
        super().__init__({
            "header": In(stream.Signature(MessageHeader)),
            "payload": In(stream.Signature(FLIT_DATA_BITS)),
            "flits": Out(stream.Signature(Flit)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = link_crc = LINK_CRC.create()

        # The message being sent: its header, the flit about to go, the payload words left.
        header = Signal(MessageHeader)
        header_flit = Signal(range(HEADER_FLITS))
        words_left = Signal(range((1 << LENGTH_BITS) // FLIT_BYTES))
        # The header flit about to go: flit ``header_flit`` of the header, least significant first.
        header_word = Signal(FLIT_DATA_BITS)
        header_bits = Value.cast(header)
        for index in reversed(range(HEADER_FLITS)):
            word = header_bits[FLIT_DATA_BITS * index:FLIT_DATA_BITS * (index + 1)]
            header_word_next = word if index == HEADER_FLITS - 1 else \
                Mux(header_flit == index, word, header_word_next)
        m.d.comb += header_word.eq(header_word_next)
        trailer = Signal(Trailer)
        m.d.comb += trailer.crc.eq(link_crc.crc)
        sent = Signal()
        m.d.comb += sent.eq(self.flits.valid & self.flits.ready)
        take_header = [header.eq(self.header.payload), header_flit.eq(0),
                       words_left.eq(self.header.payload.length // FLIT_BYTES)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.header.ready.eq(1)
                with m.If(self.header.valid):
                    m.d.sync += take_header
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [
                    self.flits.valid.eq(1),
                    self.flits.payload.data.eq(header_word),
                ]
                with m.If(sent):
                    m.d.sync += header_flit.eq(header_flit + 1)
                    with m.If(header_flit == HEADER_FLITS - 1):
                        with m.If(words_left == 0):
                            m.next = "TRAILER"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [
                    self.flits.valid.eq(self.payload.valid),
                    self.flits.payload.data.eq(self.payload.payload),
                ]
                with m.If(sent):
                    m.d.sync += words_left.eq(words_left - 1)
                    with m.If(words_left == 1):
                        m.next = "TRAILER"
            with m.State("TRAILER"):
                m.d.comb += [
                    self.flits.valid.eq(1),
                    self.flits.payload.data.eq(trailer),
                    self.flits.payload.last.eq(1),
                    self.header.ready.eq(sent),
                ]
                with m.If(sent):
                    with m.If(self.header.valid):
                        m.d.sync += take_header
                        m.next = "HEADER"
                    with m.Else():
                        m.next = "IDLE"

        # Every header and payload flit goes through the CRC as it is sent; the first header
        # flit starts it afresh.
        m.d.comb += [
            self.payload.ready.eq(fsm.ongoing("PAYLOAD") & self.flits.ready),
            link_crc.data.eq(self.flits.payload.data),
            link_crc.valid.eq(sent & ~fsm.ongoing("TRAILER")),
            link_crc.start.eq(fsm.ongoing("HEADER") & (header_flit == 0)),
        ]
        return m
