"""The message library: the user-level software side of the NI protocol, as thread code.

Every helper is a generator that a thread runs with ``yield from``: it yields the operations of
:mod:`behavioral.core` (:class:`~behavioral.core.MmioRead`, :class:`~behavioral.core.MmioWrite`,
:class:`~behavioral.core.Load`, :class:`~behavioral.core.Wait`) and returns its result. The
registers are those of :mod:`rtl.ni`'s contract: endpoint ``e``'s user page is at NI-window
address ``e << 12``, each register at its :class:`rtl.layouts.UserReg` offset, every access one
64-bit word.

Sending is :func:`send`: the descriptor, packed through :data:`rtl.layouts.SendDescriptor` and
written as its 64-bit words least significant first, the PIO payload, DOORBELL, then STATUS read
until it is no longer busy. Arming is :func:`arm`. Receiving is a :class:`Receiver` per endpoint,
which keeps the ring's head: :meth:`Receiver.poll` reads RING_TAIL until an entry is there,
:meth:`Receiver.consume` loads the entry and advances RING_HEAD. The core has no MMU, so the ring
is read by physical address (:class:`behavioral.vm.Ring` gives both). :func:`wait_lock` waits on
a notification lock (the LOCK mode).

A write the NI refuses (any status but OK) raises :exc:`MmioError` in the thread: the library
never writes a register it may not, so a refusal is a bug in the set-up (endpoint not open,
wrong ASID) or a send overlapped on one endpoint.
"""

from rtl.layouts import (COMPLETION_BYTES, COMPLETION_WORDS, DESCRIPTOR_WORDS, ENDPOINT_BITS,
                         FLIT_BYTES, FLIT_DATA_BITS, MAX_PAYLOAD_BYTES, PAGE_BITS, CompletionEntry,
                         MmioStatus, NotifyMode, SendDescriptor, SendFlags, TxStatus, UserReg,
                         codec)

from .checks import check_range
from .core import Load, MmioRead, MmioWrite, Wait

__all__ = ["MmioError", "register", "send", "arm", "wait_lock", "load_entry", "write_head",
           "Receiver"]


_WORD_MASK = (1 << FLIT_DATA_BITS) - 1
_INDEX_MASK = 0xFFFF


class MmioError(RuntimeError):
    """The NI refused a user-level MMIO write; ``status`` is its answer."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def register(endpoint, reg, word=0):
    """Return the NI-window address of word ``word`` of register ``reg`` (a
    :class:`rtl.layouts.UserReg`) in endpoint ``endpoint``'s user page."""
    check_range("endpoint", endpoint, 0, (1 << ENDPOINT_BITS) - 1)
    return endpoint << PAGE_BITS | (UserReg(reg).value + FLIT_BYTES * word)


def _write(addr, value):
    """Write one register; raise :exc:`MmioError` unless the NI answers OK."""
    status = MmioStatus((yield MmioWrite(addr, value)))
    if status is not MmioStatus.OK:
        raise MmioError(f"MMIO write of {value:#x} to {addr:#06x} answered {status.name}; "
                        f"check that the endpoint is open to this thread's ASID and that no "
                        f"send of it is in progress", status)


def send(endpoint, *, dst_node, dst_endpoint, remote_va=0, key=0, metadata=0, notify=False,
         payload=None, dma=False, local_va=0, length=None, flags=0, while_busy=None):
    """Return the thread code that sends one message from ``endpoint`` and waits until the NI
    has sent or refused it (run it with ``yield from``; the arguments are checked at once).

    Parameters
    ----------
    endpoint : int
        The sending endpoint (its TX slot must be idle).
    dst_node, dst_endpoint, remote_va, key, metadata : int
        The descriptor's fields of those names.
    notify : bool
        Set the NOTIFY flag: the receiver is notified by its armed mode.
    payload : sequence of int or None
        PIO: the payload's 64-bit words, written into the TX slot. Not with ``dma``.
    dma : bool
        Set the DMA flag: the NI reads ``length`` bytes at ``local_va`` of the thread's address
        space.
    local_va : int
        DMA: where the payload is.
    length : int or None
        Payload bytes: for PIO, ``8 * len(payload)`` when None; required for DMA. A length the
        NI refuses is sent as given (the send returns BAD_LENGTH).
    flags : int
        Further descriptor flag bits, beside DMA and NOTIFY (any other bit makes the NI refuse
        the send with BAD_FLAGS).
    while_busy : callable or None
        Called with no argument each time STATUS says the send is still under way; the thread
        code it returns runs before the next look at STATUS. A process that consumes its own
        arrivals there cannot deadlock with a peer whose full ring holds this message while
        that peer's send waits for this process's ring.

    Returns
    -------
    generator
        Returns the :class:`rtl.layouts.TxError`: NONE when the message has left, else why the
        NI refused the send; raises :exc:`MmioError` if the NI refuses a write.

    Raises
    ------
    ValueError
        If the arguments do not make a descriptor (a field does not fit, payload with DMA, no
        length for DMA, more payload than a message carries).
    """
    words = list(payload or ())
    if dma and words:
        raise ValueError(f"a DMA send reads its payload from local_va; drop the {len(words)} "
                         f"payload words or send by PIO (dma=False)")
    if dma and length is None:
        raise ValueError("a DMA send needs its length in bytes; pass length")
    if len(words) > MAX_PAYLOAD_BYTES // FLIT_BYTES:
        raise ValueError(f"{len(words)} payload words exceed the "
                         f"{MAX_PAYLOAD_BYTES // FLIT_BYTES} of the largest message")
    flags |= ((SendFlags.DMA if dma else SendFlags(0))
              | (SendFlags.NOTIFY if notify else SendFlags(0))).value
    bits = codec(SendDescriptor).pack(
        dst_node=dst_node, dst_endpoint=dst_endpoint, flags=flags,
        length=FLIT_BYTES * len(words) if length is None else length, key=key,
        remote_va=remote_va, local_va=local_va, metadata=metadata)
    for word in words:
        check_range("payload word", word, 0, _WORD_MASK)
    return _doorbell(endpoint, bits, words, while_busy)


def _doorbell(endpoint, bits, words, while_busy):
    """Write the descriptor ``bits`` and the payload ``words``, ring, wait for the outcome."""
    for index in range(DESCRIPTOR_WORDS):
        yield from _write(register(endpoint, UserReg.DESCRIPTOR, index),
                          (bits >> (FLIT_DATA_BITS * index)) & _WORD_MASK)
    for index, word in enumerate(words):
        yield from _write(register(endpoint, UserReg.PAYLOAD, index), word)
    yield from _write(register(endpoint, UserReg.DOORBELL), 0)
    while True:
        status = codec(TxStatus).unpack((yield MmioRead(register(endpoint, UserReg.STATUS))))
        if not status["busy"]:
            return status["error"]
        if while_busy is not None:
            yield from while_busy()


def arm(endpoint, mode, *, lock=0, handler=0, stack=0):
    """Arm ``endpoint``'s notification: write ARM_LOCK, ARM_HANDLER and ARM_STACK, then
    ARM_MODE, which makes them the Notifier's entry.

    Parameters
    ----------
    mode : :class:`rtl.layouts.NotifyMode`
    lock : int
        LOCK: the notification lock's VA (for :func:`wait_lock`).
    handler : int
        BRANCH and SPAWN: the handler's PC (a key of the core's ``handlers``).
    stack : int
        SPAWN: the handler thread's stack pointer.
    """
    mode = NotifyMode(mode)
    for reg, value in ((UserReg.ARM_LOCK, lock), (UserReg.ARM_HANDLER, handler),
                       (UserReg.ARM_STACK, stack)):
        yield from _write(register(endpoint, reg), value)
    yield from _write(register(endpoint, UserReg.ARM_MODE), mode.value)


def wait_lock(lock):
    """Wait until the notification lock at VA ``lock`` is signalled (a message arrived for an
    endpoint armed with LOCK); return the :class:`rtl.layouts.LockStatus` answer.

    Each notified message signals the lock once, and the lock counts the signals nobody has
    waited for yet: a receiver waits once for each notified message it consumes, also for a
    message it found without waiting (by polling RING_TAIL). A count left to grow fills, and a
    full count holds the NI's reception for every endpoint of the node (the ``lock_count_bits``
    of :class:`rtl.ni.NetworkInterface`)."""
    return (yield Wait(lock))


def load_entry(pa):
    """Load the completion entry at physical address ``pa``; return its fields (of
    :data:`rtl.layouts.CompletionEntry`)."""
    bits = 0
    for index in range(COMPLETION_WORDS):
        bits |= (yield Load(pa + FLIT_BYTES * index)) << (FLIT_DATA_BITS * index)
    return codec(CompletionEntry).unpack(bits)


def write_head(endpoint, head):
    """Tell the NI that the entries before index ``head`` (mod 2**16) are consumed."""
    yield from _write(register(endpoint, UserReg.RING_HEAD), head & _INDEX_MASK)


class Receiver:
    """The consumer of one endpoint's completion ring; it keeps the ring's head.

    Parameters
    ----------
    endpoint : int
        The receiving endpoint.
    ring : :class:`behavioral.vm.Ring`
        Its completion ring (``pa`` and ``entries`` are used), as
        :meth:`behavioral.vm.NiDriver.open_endpoint` returns it.
    head : int
        The index of the next entry to consume: 0 for a ring just opened.

    Attributes
    ----------
    head : int
        The index of the next entry to consume, mod 2**16.
    """

    def __init__(self, endpoint, ring, head=0):
        check_range("endpoint", endpoint, 0, (1 << ENDPOINT_BITS) - 1)
        check_range("ring entries", ring.entries, 1, 1 << 15)
        check_range("head", head, 0, _INDEX_MASK)
        self.endpoint = endpoint
        self.ring = ring
        self.head = head

    def poll(self):
        """Read RING_TAIL until it differs from the head; return the tail."""
        while True:
            tail = yield MmioRead(register(self.endpoint, UserReg.RING_TAIL))
            if tail != self.head:
                return tail

    def consume(self):
        """Load the entry at the head (one that :meth:`poll` found there), then advance the
        head and write it to RING_HEAD; return the entry (fields of
        :data:`rtl.layouts.CompletionEntry`)."""
        entry = yield from load_entry(self.ring.pa
                                      + COMPLETION_BYTES * (self.head % self.ring.entries))
        self.head = (self.head + 1) & _INDEX_MASK
        yield from write_head(self.endpoint, self.head)
        return entry
