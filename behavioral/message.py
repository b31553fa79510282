"""Messages as they travel on a link: header flits, payload flits, CRC trailer.

Everything is packed through the layouts of :mod:`rtl.layouts`; this module only knows the order
of the pieces.
"""

import zlib
from dataclasses import dataclass, field

from rtl.layouts import (FLIT_BYTES, FLIT_DATA_BITS, HEADER_FLITS, MAX_PAYLOAD_BYTES, Flit,
                         LinkFaultKind, MessageHeader, MessageKind, Trailer, codec)

__all__ = ["Message", "MessageError", "flit_value", "apply_link_fault"]


_DATA_MASK = (1 << FLIT_DATA_BITS) - 1


class MessageError(ValueError):
    """A flit sequence is not a well-formed message (length, truncation or CRC)."""


def flit_value(data, last):
    """Return the integer of one :data:`rtl.layouts.Flit` (what a link's payload port carries)."""
    return codec(Flit).pack(data=data, last=last)


def apply_link_fault(flits, fault):
    """Return the flits (``(data, last)`` pairs) of one message as a link fault injector
    (:class:`rtl.faults.LinkFaultInjector`) passes them on with ``fault`` (fields of
    :data:`rtl.layouts.LinkFault`, or None: unchanged)."""
    flits = list(flits)
    if fault is None:
        return flits
    kind, at, bit = LinkFaultKind(fault["kind"]), fault["flit"], fault["bit"]
    if kind is LinkFaultKind.CORRUPT and at < len(flits):
        data, last = flits[at]
        flits[at] = (data ^ 1 << bit, last)
    elif kind is LinkFaultKind.TRUNCATE and at < len(flits) - 1:
        flits[at + 1:] = []
        flits[at] = (flits[at][0], True)
    elif kind is LinkFaultKind.APPEND:
        data, _ = flits[-1]
        flits[-1:] = [(data, False), (data ^ 1 << bit, True)]
    return flits


@dataclass(frozen=True)
class Message:
    """One message: the header fields of :data:`rtl.layouts.MessageHeader` plus the payload.

    ``payload`` is a whole number of flits (a multiple of 8 bytes), at most 2 KiB.
    """

    dst_node: int
    src_node: int
    dst_endpoint: int = 0
    src_endpoint: int = 0
    kind: MessageKind = MessageKind.PUT
    notify: bool = False
    seq: int = 0
    key: int = 0
    remote_va: int = 0
    metadata: int = 0
    payload: bytes = field(default=b"", repr=False)

    def __post_init__(self):
        if len(self.payload) % FLIT_BYTES or len(self.payload) > MAX_PAYLOAD_BYTES:
            raise MessageError(f"payload of {len(self.payload)} bytes: it must be a multiple of "
                               f"{FLIT_BYTES} bytes and at most {MAX_PAYLOAD_BYTES}")

    def header_bits(self):
        """Return the packed header as one integer."""
        return codec(MessageHeader).pack(
            dst_node=self.dst_node, src_node=self.src_node, dst_endpoint=self.dst_endpoint,
            src_endpoint=self.src_endpoint, kind=self.kind, notify=self.notify,
            length=len(self.payload), seq=self.seq, key=self.key, remote_va=self.remote_va,
            metadata=self.metadata)

    def flits(self):
        """Return the message as a list of ``(data, last)`` pairs, header first, trailer last."""
        header = self.header_bits()
        header_bytes = header.to_bytes(HEADER_FLITS * FLIT_BYTES, "little")
        words = [(header >> (FLIT_DATA_BITS * i)) & _DATA_MASK for i in range(HEADER_FLITS)]
        words += [int.from_bytes(self.payload[i:i + FLIT_BYTES], "little")
                  for i in range(0, len(self.payload), FLIT_BYTES)]
        words.append(codec(Trailer).pack(crc=zlib.crc32(header_bytes + self.payload)))
        return [(word, index == len(words) - 1) for index, word in enumerate(words)]

    @classmethod
    def from_flits(cls, flits):
        """Rebuild a message from ``(data, last)`` pairs; check length, ``last`` and CRC.

        Raises
        ------
        :exc:`MessageError`
            If the flits are not exactly one well-formed message.
        """
        flits = list(flits)
        if len(flits) < HEADER_FLITS + 1:
            raise MessageError(f"{len(flits)} flits are too few for a message")
        header = sum(data << (FLIT_DATA_BITS * i)
                     for i, (data, _) in enumerate(flits[:HEADER_FLITS]))
        try:
            fields = codec(MessageHeader).unpack(header)
        except ValueError as error:
            raise MessageError(f"bad header: {error}") from None
        payload_flits = fields["length"] // FLIT_BYTES
        if fields["length"] % FLIT_BYTES or len(flits) != HEADER_FLITS + payload_flits + 1:
            raise MessageError(f"header says {fields['length']} payload bytes, "
                               f"but the message has {len(flits)} flits")
        if any(last for _, last in flits[:-1]) or not flits[-1][1]:
            raise MessageError("'last' is not set on exactly the final flit")
        payload = b"".join(data.to_bytes(FLIT_BYTES, "little")
                           for data, _ in flits[HEADER_FLITS:-1])
        crc = codec(Trailer).field(flits[-1][0], "crc")
        header_bytes = header.to_bytes(HEADER_FLITS * FLIT_BYTES, "little")
        if crc != zlib.crc32(header_bytes + payload):
            raise MessageError(f"CRC mismatch: trailer {crc:#010x}")
        del fields["length"], fields["reserved0"], fields["reserved1"]
        fields["notify"] = bool(fields["notify"])
        return cls(payload=payload, **fields)
