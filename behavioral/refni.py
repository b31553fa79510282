"""Transaction-level reference model of the NI (:mod:`rtl.ni`): the scoreboard and a fast mode.

The model follows the contract in :mod:`rtl.ni`'s docstring, transaction by transaction, with no
notion of cycles: an MMIO access (:meth:`ReferenceNI.mmio`), a privileged command
(:meth:`ReferenceNI.os_command`), one send taken by the TX engine (:meth:`ReferenceNI.send_next`)
and one message taken off the link by the RX engine (:meth:`ReferenceNI.receive`). Formats are
packed and unpacked through :mod:`rtl.layouts`; outputs are dicts with every field of their
layout, as :meth:`rtl.layouts.Codec.unpack` returns them, so they compare equal to the hardware's
payloads.

Decisions where the contract is silent (each follows the RTL where the RTL exists):

* **TLB misses** are resolved at once from the OS's page-table truth, ``os_translate(asid, va)``
  (a ``(ppn, perm, key)`` triple such as :class:`behavioral.vm.Page`, or None for an unmapped
  page), exactly as :class:`behavioral.vm.NiDriver` answers them: a mapped page is filled into the
  model's TLB and every page of the transfer is looked up again; None rejects. The miss is still
  reported (TX_MISS, RX_MISS in :attr:`ReferenceNI.faults`). Without ``os_translate`` every miss
  is rejected. MISS_ANSWER commands are accepted and change nothing (the model answered the miss
  when it happened), so that a scoreboard may forward the whole OS command stream; the FILLs the
  OS sends for those misses rewrite the entry the model already filled.
* **Addresses**: the low 3 bits of ``remote_va`` and ``local_va`` are ignored for placement
  (words land and are read at ``va & ~7``), and a transfer's pages are those of ``va & ~7 ..
  (va & ~7) + length - 1``, as :class:`rtl.rxengine.RxEngine` counts them. A TX fault's ``node``
  is this node.
* **A held message** (its endpoint's ring full) leaves the model unchanged, including the TLB
  fills and faults of its translation: they happen when it is received again. The RTL reports a
  miss before it waits for ring space, so a scoreboard compares faults per message, not by time.
* **A message shorter than a header** keeps the header words of the message before it, and reads
  the endpoint table entry named by its first flit (trailer or not), as the RTL's registers do.
* **Arming registers** (ARM_LOCK, ARM_HANDLER, ARM_STACK) survive WRITE_ENDPOINT; a TX send in
  progress survives it too. Commands naming an endpoint or context the NI does not have change
  nothing.
* **The completion entry's stamp** (the RTL's cycle count) is not modelled: entries are given
  without it, and :meth:`RxOutcome.apply` leaves that word of memory as it is.

The lock table's residency (WRITE_CONTEXT) and the Notifier's deliveries are not part of this
model: the Notifier's tables are kept in :attr:`ReferenceNI.notifier` (a
:class:`behavioral.notifier.NotifierModel`), to which a caller hands each
:attr:`RxOutcome.completion` when its timing model says the Notifier takes it.
"""

import copy
import enum
import zlib
from collections import deque
from dataclasses import dataclass, field

from rtl.layouts import (ASID_BITS, COMPLETION_BYTES, COMPLETION_WORDS, DESCRIPTOR_WORDS,
                         ENDPOINT_BITS, FLIT_BYTES, FLIT_DATA_BITS, HEADER_FLITS, MAX_CONTEXTS,
                         MAX_NODES, MAX_PAYLOAD_BYTES, MMIO_ADDR_BITS, PAGE_BITS, PA_BITS, VA_BITS,
                         CompletionEntry, CompletionStatus, EndpointEntry, MessageHeader,
                         MessageKind, MmioStatus, NiFault, NiFaultKind, NiOsOp, NotifierCommandOp,
                         NotifyMode, SendDescriptor, SendFlags, TlbStatus, Trailer, TxError,
                         TxStatus, UserReg, codec, ni_os_command_layout)

from .checks import check_range, is_int, payload
from .memory import SparseMemory
from .message import Message
from .notifier import NotifierModel
from .tlb import TLBModel

__all__ = ["RxResult", "TxOutcome", "RxOutcome", "ReferenceNI", "ReferenceSystem"]


_PAGE_BYTES = 1 << PAGE_BITS
_WORD_MASK = (1 << FLIT_DATA_BITS) - 1
_VA_MASK = (1 << VA_BITS) - 1
_PAYLOAD_WORDS = MAX_PAYLOAD_BYTES // FLIT_BYTES
#: Misses one transfer may take before the model calls it a livelock (a TLB too small to hold
#: both pages of a transfer evicts one while filling the other, for ever, in the RTL too).
_MISS_LIMIT = 4

_READABLE = {UserReg.DOORBELL, UserReg.STATUS, UserReg.RING_HEAD, UserReg.RING_TAIL}
_WRITABLE = {UserReg.DESCRIPTOR, UserReg.PAYLOAD, UserReg.DOORBELL, UserReg.RING_HEAD,
             UserReg.ARM_MODE, UserReg.ARM_LOCK, UserReg.ARM_HANDLER, UserReg.ARM_STACK}
#: Writes refused with SLOT_BUSY while the endpoint's send is in progress.
_SLOT = {UserReg.DESCRIPTOR, UserReg.PAYLOAD, UserReg.DOORBELL}
_ARM = {UserReg.ARM_LOCK: "lock", UserReg.ARM_HANDLER: "handler_pc", UserReg.ARM_STACK: "stack"}
#: What ARM_MODE takes (any other value answers BAD_ADDRESS).
_MODES = {mode.value for mode in NotifyMode}


class RxResult(enum.Enum):
    """What became of a message the RX engine took."""
    #: Payload and completion entry written.
    DELIVERED = "delivered"
    #: The OS rejected a fill: a REJECTED completion entry written, no payload.
    REJECTED = "rejected"
    #: Dropped with a fault; nothing written.
    DISCARDED = "discarded"
    #: The endpoint's ring is full: nothing changed; offer the message again after its head moves.
    HELD = "held"


@dataclass(frozen=True)
class TxOutcome:
    """One send taken by the TX engine.

    Attributes
    ----------
    endpoint : int
        The sending endpoint.
    error : :class:`rtl.layouts.TxError`
        NONE if ``message`` was sent, else why the send was refused.
    message : :class:`behavioral.message.Message` or None
        The message sent.
    """
    endpoint: int
    error: TxError
    message: Message | None = None


@dataclass(frozen=True)
class RxOutcome:
    """One message taken by the RX engine.

    Attributes
    ----------
    result : :class:`RxResult`
    fault : :class:`rtl.layouts.NiFaultKind` or None
        Why the message was discarded or rejected.
    writes : dict
        Payload words written, physical address -> word, in the order written.
    entry : dict or None
        The completion entry: :data:`rtl.layouts.CompletionEntry` fields but ``stamp``.
    entry_pa, entry_va : int or None
        Where the entry was written, and its VA (what a handler is given).
    tail : int or None
        The endpoint's ring tail after the entry.
    completion : dict or None
        The :data:`rtl.layouts.Completion` for the Notifier, if the message asked to notify.
    """
    result: RxResult
    fault: NiFaultKind | None = None
    writes: dict = field(default_factory=dict)
    entry: dict | None = None
    entry_pa: int | None = None
    entry_va: int | None = None
    tail: int | None = None
    completion: dict | None = None

    def apply(self, memory):
        """Write the payload words and the entry's words (all but the stamp word) into
        ``memory`` (an object with ``write_word(pa, value)``, such as
        :class:`behavioral.memory.SparseMemory`): the receiver's memory as the NI leaves it."""
        for pa, word in self.writes.items():
            memory.write_word(pa, word)
        if self.entry is not None:
            bits = codec(CompletionEntry).pack(**self.entry)
            for index in range(COMPLETION_WORDS - 1):
                memory.write_word(self.entry_pa + FLIT_BYTES * index,
                                  (bits >> (FLIT_DATA_BITS * index)) & _WORD_MASK)


@dataclass
class _TxSlot:
    """An endpoint's TX slot and status."""
    descriptor: list = field(default_factory=lambda: [0] * DESCRIPTOR_WORDS)
    payload: list = field(default_factory=lambda: [0] * _PAYLOAD_WORDS)
    busy: bool = False
    asid: int = 0
    error: TxError = TxError.NONE
    sent: int = 0


def _pages(va, length):
    """Return the page VAs a transfer of ``length`` bytes at ``va`` touches (none, one or two)."""
    if length == 0:
        return []
    first = va & ~(_PAGE_BYTES - 1) & _VA_MASK
    if (va & (_PAGE_BYTES - FLIT_BYTES)) + length > _PAGE_BYTES:
        return [first, (first + _PAGE_BYTES) & _VA_MASK]
    return [first]


def _word_pa(ppns, va, index):
    """Return the physical address of word ``index`` of a transfer at ``va`` over ``ppns``."""
    offset = (va & (_PAGE_BYTES - FLIT_BYTES)) + FLIT_BYTES * index
    return ppns[offset >> PAGE_BITS] << PAGE_BITS | (offset & (_PAGE_BYTES - 1))


def _register(offset):
    """Return (register, word) at byte ``offset`` of a user page, or None."""
    if offset % FLIT_BYTES:
        return None
    if offset < DESCRIPTOR_WORDS * FLIT_BYTES:
        return UserReg.DESCRIPTOR, offset // FLIT_BYTES
    if offset >= UserReg.PAYLOAD.value:
        return UserReg.PAYLOAD, (offset - UserReg.PAYLOAD.value) // FLIT_BYTES
    try:
        return UserReg(offset), 0
    except ValueError:
        return None


class ReferenceNI:
    """The NI of one node as transactions; see the module docstring.

    Parameters
    ----------
    node : int
        This node's number, 0 to ``nodes - 1``.
    nodes : int
        Nodes in the system, 2 to 16: a send to another node is BAD_NODE.
    endpoints : int
        Endpoints (user pages), 1 to 16.
    contexts : int
        SMT contexts of the Notifier's context table, 1 to 8.
    tlb_entries, asid_bits : int
        NI TLB size and ASID width.
    os_translate : callable or None
        ``os_translate(asid, va)`` returns the page-table entry of ``va`` as ``(ppn, perm,
        key)`` (``perm`` a dict of :data:`rtl.layouts.TlbPermissions` fields), or None if it is
        not mapped; None: every TLB miss is rejected.

    Attributes
    ----------
    tlb : :class:`behavioral.tlb.TLBModel`
        The NI TLB.
    notifier : :class:`behavioral.notifier.NotifierModel`
        The Notifier's tables, as WRITE_ENDPOINT, WRITE_CONTEXT and ARM_MODE leave them.
    faults : list of dict
        Every fault reported on the ``fault`` port (:data:`rtl.layouts.NiFault` fields), in
        order.
    """

    def __init__(self, node, *, nodes=2, endpoints=8, contexts=4, tlb_entries=32,
                 asid_bits=ASID_BITS, os_translate=None):
        check_range("nodes", nodes, 2, MAX_NODES)
        check_range("node", node, 0, nodes - 1)
        check_range("endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        check_range("contexts", contexts, 1, MAX_CONTEXTS)
        check_range("tlb_entries", tlb_entries, 1, None)
        check_range("asid_bits", asid_bits, 1, ASID_BITS)
        if os_translate is not None and not callable(os_translate):
            raise TypeError(f"os_translate {os_translate!r} must be callable as "
                            f"os_translate(asid, va), or None")
        self.node = node
        self.nodes = nodes
        self.endpoints = endpoints
        self.contexts = contexts
        self.asid_bits = asid_bits
        self.tlb = TLBModel(tlb_entries, asid_bits)
        self.notifier = NotifierModel(endpoints, contexts)
        self.faults = []
        self._os_translate = os_translate
        self._command = codec(ni_os_command_layout(asid_bits))
        self._table = [payload(codec(EndpointEntry)) for _ in range(endpoints)]
        self._head = [0] * endpoints
        self._tail = [0] * endpoints
        self._arm = [dict.fromkeys(_ARM.values(), 0) for _ in range(endpoints)]
        self._slots = [_TxSlot() for _ in range(endpoints)]
        self._tx_pointer = 0
        self._seq = [0] * nodes
        self._rx_header = 0             # the header registers, kept across messages

    # Read-only views ----------------------------------------------------------------------------

    def endpoint(self, index):
        """Return endpoint ``index``'s table entry (fields of :data:`rtl.layouts.EndpointEntry`)."""
        check_range("endpoint", index, 0, self.endpoints - 1)
        return dict(self._table[index])

    def status(self, index):
        """Return endpoint ``index``'s STATUS (fields of :data:`rtl.layouts.TxStatus`)."""
        check_range("endpoint", index, 0, self.endpoints - 1)
        slot = self._slots[index]
        return {"busy": int(slot.busy), "error": slot.error, "sent": slot.sent}

    def ring(self, index):
        """Return endpoint ``index``'s ring indices as ``(head, tail)``."""
        check_range("endpoint", index, 0, self.endpoints - 1)
        return self._head[index], self._tail[index]

    def registers(self, index):
        """Return what a read of each readable register of endpoint ``index`` answers now:
        :class:`rtl.layouts.UserReg` -> value."""
        return {UserReg.DOORBELL: 0, UserReg.STATUS: codec(TxStatus).pack(**self.status(index)),
                UserReg.RING_HEAD: self._head[index], UserReg.RING_TAIL: self._tail[index]}

    def pending(self):
        """Return the endpoints whose doorbelled send waits for :meth:`send_next`."""
        return [index for index, slot in enumerate(self._slots) if slot.busy]

    # User-level MMIO ----------------------------------------------------------------------------

    def mmio(self, write, asid, addr, data=0):
        """Apply one user-level MMIO access; return ``(MmioStatus, value)``.

        ``addr`` is ``endpoint << 12 | offset``; ``value`` is the register read, 0 for a write or
        an access that is not OK. A FOREIGN_ASID access also reports a fault.
        """
        check_range("MMIO address", addr, 0, (1 << MMIO_ADDR_BITS) - 1)
        check_range("MMIO asid", asid, 0, (1 << ASID_BITS) - 1)
        check_range("MMIO data", data, 0, _WORD_MASK)
        index, offset = addr >> PAGE_BITS, addr & (_PAGE_BYTES - 1)
        register = _register(offset)
        allowed = _WRITABLE if write else _READABLE
        if (index >= self.endpoints or not self._table[index]["enabled"] or register is None
                or register[0] not in allowed):
            return MmioStatus.BAD_ADDRESS, 0
        if asid != self._table[index]["asid"]:
            self._fault(NiFaultKind.FOREIGN_ASID, endpoint=index, asid=asid, va=addr,
                        node=self.node)
            return MmioStatus.FOREIGN_ASID, 0
        reg, word = register
        if reg is UserReg.ARM_MODE and write and data not in _MODES:
            return MmioStatus.BAD_ADDRESS, 0
        slot = self._slots[index]
        if not write:
            return MmioStatus.OK, self.registers(index)[reg]
        if reg in _SLOT and slot.busy:
            return MmioStatus.SLOT_BUSY, 0
        if reg is UserReg.DESCRIPTOR:
            slot.descriptor[word] = data
        elif reg is UserReg.PAYLOAD:
            slot.payload[word] = data
        elif reg is UserReg.DOORBELL:
            slot.busy, slot.asid, slot.error = True, asid, TxError.NONE
        elif reg is UserReg.RING_HEAD:
            self._head[index] = data & 0xFFFF
        elif reg is UserReg.ARM_MODE:
            row = self._table[index]
            self.notifier.command(NotifierCommandOp.WRITE_ENDPOINT, index, endpoint={
                "mode": NotifyMode(data), "asid": row["asid"], "thread": row["thread"],
                **self._arm[index]})
        else:
            self._arm[index][_ARM[reg]] = data & _VA_MASK
        return MmioStatus.OK, 0

    # Privileged commands ------------------------------------------------------------------------

    def os_command(self, **fields):
        """Apply one privileged command: fields of :func:`rtl.layouts.ni_os_command_layout`
        (enum fields as members, nested layouts as dicts; fields left out are zero).

        Raises
        ------
        ValueError
            If a field is unknown or does not fit.
        """
        command = payload(self._command, **fields)
        op, index = command["op"], command["index"]
        if op is NiOsOp.WRITE_ENDPOINT and index < self.endpoints:
            row = command["endpoint"]
            self._table[index] = row
            self._head[index] = self._tail[index] = 0
            self.notifier.command(NotifierCommandOp.WRITE_ENDPOINT, index, endpoint={
                "mode": NotifyMode.NONE, "asid": row["asid"], "thread": row["thread"]})
        elif op is NiOsOp.TLB:
            tlb = command["tlb"]
            self.tlb.execute(tlb["op"], asid=tlb["asid"], vpn=tlb["vpn"], ppn=tlb["ppn"],
                             perm=tlb["perm"], key=tlb["key"])
        elif op is NiOsOp.WRITE_CONTEXT and index < self.contexts:
            self.notifier.command(NotifierCommandOp.WRITE_CONTEXT, index,
                                  context=command["context"])

    # Sending ------------------------------------------------------------------------------------

    def send_next(self, memory_read):
        """Take the next doorbelled endpoint in round-robin order and send or refuse its
        descriptor; return a :class:`TxOutcome`, or None if no send is pending.

        Parameters
        ----------
        memory_read : callable
            ``memory_read(pa)`` returns the 64-bit word at physical address ``pa`` (DMA sends).
        """
        index = next((i % self.endpoints for i in range(self._tx_pointer,
                                                        self._tx_pointer + self.endpoints)
                      if self._slots[i % self.endpoints].busy), None)
        if index is None:
            return None
        self._tx_pointer = (index + 1) % self.endpoints
        slot = self._slots[index]
        fields = codec(SendDescriptor).unpack(sum(word << (FLIT_DATA_BITS * i)
                                                  for i, word in enumerate(slot.descriptor)))
        length, flags = fields["length"], fields["flags"]
        words = length // FLIT_BYTES
        error = TxError.NONE
        if length % FLIT_BYTES or length > MAX_PAYLOAD_BYTES:
            error = TxError.BAD_LENGTH
        elif fields["dst_node"] >= self.nodes:
            error = TxError.BAD_NODE
        elif flags & ~(SendFlags.DMA.value | SendFlags.NOTIFY.value):
            error = TxError.BAD_FLAGS
        elif flags & SendFlags.DMA.value:
            error, data = self._dma(index, slot.asid, fields["local_va"], words, memory_read)
        else:
            data = slot.payload[:words]
        slot.busy, slot.error = False, error
        if error is not TxError.NONE:
            return TxOutcome(index, error)
        dst = fields["dst_node"]
        message = Message(
            dst_node=dst, src_node=self.node, dst_endpoint=fields["dst_endpoint"],
            src_endpoint=index, notify=bool(flags & SendFlags.NOTIFY.value), seq=self._seq[dst],
            key=fields["key"], remote_va=fields["remote_va"], metadata=fields["metadata"],
            payload=b"".join(word.to_bytes(FLIT_BYTES, "little") for word in data))
        self._seq[dst] = (self._seq[dst] + 1) & 0xFFFF
        slot.sent = (slot.sent + 1) & 0xFFFF
        return TxOutcome(index, TxError.NONE, message)

    def _dma(self, index, asid, va, words, memory_read):
        """Translate and read a DMA payload; return ``(TxError, words read)``."""
        translated, refusal = self._translate(NiFaultKind.TX_MISS, index, asid,
                                              _pages(va, words * FLIT_BYTES), self.tlb,
                                              self.faults, remote=False)
        if refusal is TlbStatus.MISS:
            return TxError.DMA_REJECTED, []
        if refusal is TlbStatus.PERMISSION_FAULT:
            self._fault(NiFaultKind.TX_PERMISSION, endpoint=index, asid=asid, va=translated,
                        node=self.node)
            return TxError.DMA_FAULT, []
        return TxError.NONE, [self._read(memory_read, _word_pa(translated, va, i))
                              for i in range(words)]

    @staticmethod
    def _read(memory_read, pa):
        word = memory_read(pa)
        if not (is_int(word) and 0 <= word <= _WORD_MASK):
            raise ValueError(f"memory_read({pa:#x}) returned {word!r}; it must return a 64-bit "
                             f"unsigned integer")
        return word

    # Receiving ----------------------------------------------------------------------------------

    def receive(self, message):
        """Take one message off the link; return an :class:`RxOutcome`.

        Parameters
        ----------
        message : :class:`behavioral.message.Message` or list of (int, bool)
            The message, or its flits as ``(data, last)`` pairs up to and including the first
            with ``last`` set (corrupted as a test likes).

        Raises
        ------
        ValueError
            If the flits are not a run ending at its only ``last`` flit.
        """
        flits = message.flits() if isinstance(message, Message) else list(message)
        lasts = [index for index, (_, last) in enumerate(flits) if last]
        if lasts != [len(flits) - 1]:
            raise ValueError(f"flits with 'last' at positions {lasts} of {len(flits)}: give the "
                             f"flits of one message, 'last' set on its final flit only")
        for data, _ in flits:
            check_range("flit data", data, 0, _WORD_MASK)
        body, trailer = [data for data, _ in flits[:-1]], flits[-1][0]
        header = self._rx_header
        for index, data in enumerate(body[:HEADER_FLITS]):
            mask = _WORD_MASK << (FLIT_DATA_BITS * index)
            header = (header & ~mask) | data << (FLIT_DATA_BITS * index)
        arriving = codec(MessageHeader).field(flits[0][0], "dst_endpoint")
        row = self._table[arriving] if arriving < self.endpoints else payload(codec(EndpointEntry))
        h = {name: codec(MessageHeader).field(header, name) for name in
             ("dst_node", "src_node", "dst_endpoint", "kind", "notify", "length", "key",
              "remote_va", "src_endpoint", "seq", "metadata")}
        crc = zlib.crc32(b"".join(data.to_bytes(FLIT_BYTES, "little") for data in body))
        check = None
        if codec(Trailer).field(trailer, "crc") != crc:
            check = NiFaultKind.BAD_CRC
        elif len(body) != HEADER_FLITS + h["length"] // FLIT_BYTES:
            check = NiFaultKind.TRUNCATED
        elif (h["dst_node"] != self.node or h["kind"] != MessageKind.PUT.value
              or h["length"] % FLIT_BYTES or h["length"] > MAX_PAYLOAD_BYTES):
            check = NiFaultKind.BAD_HEADER
        elif h["dst_endpoint"] >= self.endpoints or not row["enabled"]:
            check = NiFaultKind.BAD_ENDPOINT
        fault = dict(endpoint=h["dst_endpoint"], asid=row["asid"], node=h["src_node"])
        if check is not None:
            self._rx_header = header
            self._fault(check, va=0, **fault)
            return RxOutcome(RxResult.DISCARDED, check)
        return self._deliver(h, header, row, body[HEADER_FLITS:], fault)

    def _deliver(self, h, header, row, words, fault):
        """Translate, wait for ring space, write: the part after the checks, on copies of the
        TLB and fault log, kept unless the message is held."""
        tlb, faults = copy.deepcopy(self.tlb), []
        pages = _pages(h["remote_va"], h["length"])
        translated, refusal = self._translate(NiFaultKind.RX_MISS, h["dst_endpoint"],
                                              row["asid"], pages, tlb, faults, remote=True,
                                              key=h["key"], node=h["src_node"])
        if refusal in (TlbStatus.PERMISSION_FAULT, TlbStatus.KEY_FAULT):
            kind = {TlbStatus.PERMISSION_FAULT: NiFaultKind.RX_PERMISSION,
                    TlbStatus.KEY_FAULT: NiFaultKind.RX_KEY}[refusal]
            faults.append(payload(codec(NiFault), kind=kind, va=translated, **fault))
            self._commit(header, tlb, faults)
            return RxOutcome(RxResult.DISCARDED, kind)
        index = h["dst_endpoint"]
        size = 1 << row["ring_log2"]
        if (self._tail[index] - self._head[index]) & 0xFFFF == size:
            return RxOutcome(RxResult.HELD)
        rejected = refusal is TlbStatus.MISS
        if rejected:
            faults.append(payload(codec(NiFault), kind=NiFaultKind.RX_REJECTED, va=pages[0],
                                  **fault))
        self._commit(header, tlb, faults)
        writes = {} if rejected else {_word_pa(translated, h["remote_va"], i): word
                                      for i, word in enumerate(words)}
        slot_offset = COMPLETION_BYTES * (self._tail[index] & (size - 1))
        entry_pa = ((row["ring_pa"] & ~(COMPLETION_BYTES - 1)) + slot_offset) % (1 << PA_BITS)
        entry_va = (row["ring_va"] + slot_offset) & _VA_MASK
        self._tail[index] = (self._tail[index] + 1) & 0xFFFF
        entry = payload(codec(CompletionEntry), src_node=h["src_node"],
                        src_endpoint=h["src_endpoint"], status=CompletionStatus.REJECTED if rejected
                        else CompletionStatus.DELIVERED,
                        length=h["length"], seq=h["seq"], landing_va=h["remote_va"],
                        metadata=h["metadata"])
        del entry["stamp"]
        return RxOutcome(RxResult.REJECTED if rejected else RxResult.DELIVERED,
                         NiFaultKind.RX_REJECTED if rejected else None, writes, entry, entry_pa,
                         entry_va, self._tail[index],
                         {"endpoint": index, "entry": entry_va} if h["notify"] else None)

    def _commit(self, header, tlb, faults):
        self._rx_header, self.tlb = header, tlb
        self.faults.extend(faults)

    # Translation and faults ---------------------------------------------------------------------

    def _translate(self, miss_kind, endpoint, asid, pages, tlb, faults, *, remote, key=0,
                   node=None):
        """Translate ``pages`` in ``tlb``, answering misses from ``os_translate`` (filling
        ``tlb``, reporting into ``faults``).

        Return ``(ppns, None)`` when every page hit; else ``(va, status)``: the first page in
        order that did not hit and its :class:`rtl.layouts.TlbStatus` (MISS: the OS rejected).
        Lookups and fills use ``asid`` cut to ``asid_bits``; faults and the OS see it whole.
        """
        tlb_asid = asid & ((1 << self.asid_bits) - 1)
        node = self.node if node is None else node
        for _ in range(_MISS_LIMIT + 1):
            answers = [tlb.lookup(tlb_asid, va, remote=remote, key=key) for va in pages]
            refused = next(((va, answer.status) for va, answer in zip(pages, answers)
                            if answer.status is not TlbStatus.HIT), None)
            if refused is None:
                return [answer.ppn for answer in answers], None
            va, status = refused
            if status is not TlbStatus.MISS:
                return refused
            faults.append(payload(codec(NiFault), kind=miss_kind, endpoint=endpoint, asid=asid,
                                  va=va, node=node))
            page = self._os_translate(asid, va) if self._os_translate else None
            if page is None:
                return refused
            ppn, perm, page_key = page
            tlb.fill(tlb_asid, va >> PAGE_BITS, ppn, local_read=perm.get("local_read", 0),
                     remote_write=perm.get("remote_write", 0), key=page_key)
        raise RuntimeError(f"pages {[hex(va) for va in pages]} of ASID {asid} missed "
                           f"{_MISS_LIMIT + 1} times: a TLB of {tlb.entries} entries cannot hold "
                           f"them all; use more tlb_entries")

    def _fault(self, kind, **fields):
        self.faults.append(payload(codec(NiFault), kind=kind, **fields))


class ReferenceSystem:
    """``nodes`` reference NIs joined by links, with no timing: the fast mode.

    Each node's link in is a FIFO of messages in the order they were sent; a message its NI
    holds (ring full) blocks that link until it is taken.

    Parameters
    ----------
    nodes : int
        Nodes, 2 to 16.
    memories : list or None
        One memory per node (``read_word``/``write_word``, such as
        :class:`behavioral.memory.SparseMemory`); None: fresh sparse memories.
    os_translate : list or None
        One ``os_translate`` callable (or None) per node (see :class:`ReferenceNI`).
    **parameters
        Further :class:`ReferenceNI` parameters, the same for every node.

    Attributes
    ----------
    nis : list of :class:`ReferenceNI`
    memories : list
    links : list of :class:`collections.deque`
        The messages waiting on each node's link in.
    """

    def __init__(self, nodes=2, *, memories=None, os_translate=None, **parameters):
        check_range("nodes", nodes, 2, MAX_NODES)
        for name, value in (("memories", memories), ("os_translate", os_translate)):
            if value is not None and len(value) != nodes:
                raise ValueError(f"{name} has {len(value)} items; give one per node ({nodes})")
        translate = os_translate or [None] * nodes
        self.nis = [ReferenceNI(node, nodes=nodes, os_translate=translate[node], **parameters)
                    for node in range(nodes)]
        self.memories = list(memories) if memories else [SparseMemory() for _ in range(nodes)]
        self.links = [deque() for _ in range(nodes)]

    def step(self):
        """Let every NI send one pending message, then every link deliver its first message;
        return the outcomes as ``(node, TxOutcome or RxOutcome)`` pairs, held messages
        included."""
        outcomes = []
        for node, ni in enumerate(self.nis):
            sent = ni.send_next(self.memories[node].read_word)
            if sent is not None:
                outcomes.append((node, sent))
                if sent.message is not None:
                    self.links[sent.message.dst_node].append(sent.message)
        for node, link in enumerate(self.links):
            if link:
                received = self.nis[node].receive(link[0])
                outcomes.append((node, received))
                if received.result is not RxResult.HELD:
                    link.popleft()
                    received.apply(self.memories[node])
        return outcomes

    def run(self, max_steps=100_000):
        """Step until nothing is left to send or deliver but held messages; return every
        outcome but the held ones, in order.

        Raises
        ------
        RuntimeError
            If the system is still busy after ``max_steps`` steps.
        """
        check_range("max_steps", max_steps, 1, None)
        outcomes = []
        for _ in range(max_steps):
            progress = [(node, outcome) for node, outcome in self.step()
                        if not (isinstance(outcome, RxOutcome)
                                and outcome.result is RxResult.HELD)]
            if not progress:
                return outcomes
            outcomes += progress
        raise RuntimeError(f"the system is still busy after {max_steps} steps; raise max_steps")
