"""Every wire, descriptor and memory format of smtni, in one place.

The RTL builds its signals from these layouts; the behavioural model and the testbenches pack and
unpack Python integers through the same layouts with :class:`Codec`, never through hand-written bit
positions. A format change made here reaches all three.

Bit order follows :mod:`amaranth.lib.data`: the first field of a ``StructLayout`` occupies the least
significant bits. A multi-flit format (the message header) is sent least significant flit first,
and a flit's bytes are little-endian, so byte ``i`` of a message is bits ``8*i .. 8*i+7`` of the
concatenated flit data.
"""

import enum as py_enum
import functools

from amaranth.lib import data, enum

__all__ = [
    "FLIT_DATA_BITS", "FLIT_BYTES", "NODE_BITS", "MAX_NODES", "ENDPOINT_BITS", "LENGTH_BITS",
    "MAX_PAYLOAD_BYTES", "MAX_PAYLOAD_WORDS", "HEADER_FLITS", "TRAILER_FLITS",
    "VA_BITS", "PA_BITS", "PAGE_BITS", "VPN_BITS", "PPN_BITS", "KEY_BITS", "ASID_BITS",
    "Flit", "MessageKind", "MessageHeader", "Trailer",
    "TlbPermissions", "TlbStatus", "TlbResponse", "TlbOp",
    "tlb_entry_layout", "tlb_lookup_layout", "tlb_command_layout",
    "LINE_BYTES", "LINE_WORDS", "LINE_ADDR_BITS",
    "MsgBufTxOp", "msgbuf_tx_command_layout", "msgbuf_line_index_layout", "WordBeat",
    "RxLineRequest", "RxLineHint", "RxFillBeat", "LineRequest", "LineBeat", "CohResponse",
    "MemWriteBeat",
    "THREAD_BITS", "CONTEXT_BITS", "MAX_CONTEXTS",
    "LOCK_SIGNAL_RESERVE", "LockOp", "LockKind", "LockStatus", "LockRequest", "LockResponse",
    "LockSignal", "LockReleased",
    "LockOsReason", "LockOsEvent", "Residency",
    "NotifyMode", "NotifierEndpoint", "NotifierContext", "NotifierCommandOp",
    "notifier_command_layout", "NOTIFIER_COUNTERS", "Completion", "NotifyEventKind", "NotifyEvent",
    "HandlerReturnOp", "HandlerReturn", "NotifyOsReason", "NotifyOsEvent",
    "MMIO_ADDR_BITS", "SendFlags", "SendDescriptor", "DESCRIPTOR_WORDS", "TxError", "TxStatus",
    "CompletionStatus", "CompletionEntry", "COMPLETION_WORDS", "COMPLETION_BYTES", "UserReg",
    "MmioStatus", "MmioRequest", "MmioResponse", "EndpointEntry", "EndpointWrite", "NiOsOp",
    "NiEngine", "NiTunable",
    "ni_os_command_layout", "NiFaultKind", "NiFault", "RX_COUNTERS", "TX_COUNTERS",
    "rx_lookup_layout", "RxTranslation", "RxJob", "RxStagedWord",
    "TxSlotWrite", "TxSlotRead", "Doorbell", "MissAnswer", "tx_send_layout", "SendPlan",
    "MAX_MESSAGE_FLITS", "LinkFaultKind", "LinkFault",
    "AxiResp", "AXI_DATA_BITS", "axi_lite_access_layout", "AxiLiteAnswer", "OsReg",
    "OS_COMMAND_WORDS", "OS_EVENT_WORDS", "OS_COUNTERS", "axis_data_bits",
    "Codec", "codec",
]


#: Link payload width; a message is a whole number of flits.
FLIT_DATA_BITS = 64
FLIT_BYTES = FLIT_DATA_BITS // 8
#: Node numbers are this wide, which bounds a system to 16 nodes.
NODE_BITS = 4
MAX_NODES = 1 << NODE_BITS
#: Endpoint numbers within a node (DESIGN default: 8 endpoints; the field allows 16).
ENDPOINT_BITS = 4
#: Payload length in bytes; the largest message carries 2 KiB.
LENGTH_BITS = 12
MAX_PAYLOAD_BYTES = 2048
MAX_PAYLOAD_WORDS = MAX_PAYLOAD_BYTES // FLIT_BYTES
#: Virtual addresses (per process) and physical addresses (per node); 4 KiB pages.
VA_BITS = 48
PA_BITS = 32
PAGE_BITS = 12
VPN_BITS = VA_BITS - PAGE_BITS
PPN_BITS = PA_BITS - PAGE_BITS
#: A receive window's key, carried in every message to it.
KEY_BITS = 16
#: Address-space identifiers (the NI TLB's default; the width is a parameter of the TLB).
ASID_BITS = 8


Flit = data.StructLayout({
    "data": FLIT_DATA_BITS,
    "last": 1,           # marks the final flit of a message
})


class MessageKind(enum.Enum, shape=4):
    """What a message asks of the receiving NI."""
    #: Zero-copy write of the payload into the receiver's window at ``remote_va``.
    PUT = 0


#: The first flits of every message. ``dst_node`` sits in the first flit so that the Fabric routes
#: on the first flit alone.
MessageHeader = data.StructLayout({
    # flit 0
    "dst_node":     NODE_BITS,
    "src_node":     NODE_BITS,
    "dst_endpoint": ENDPOINT_BITS,
    "kind":         MessageKind,
    "notify":       1,
    "reserved0":    3,
    "length":       LENGTH_BITS,   # payload bytes, a multiple of FLIT_BYTES
    "seq":          16,            # per (source, destination) sequence number
    "key":          KEY_BITS,      # receive window key
    # flit 1
    "remote_va":    VA_BITS,
    "src_endpoint": ENDPOINT_BITS, # the sending endpoint, reported in the completion entry
    "reserved1":    12,
    # flit 2
    "metadata":     64,            # opaque to the NI, handed to the receiver
})

#: The last flit of every message: CRC-32 (Ethernet polynomial, reflected, as ``zlib.crc32`` and
#: ``amaranth.lib.crc.catalog.CRC32_ETHERNET``) over the header and payload bytes.
Trailer = data.StructLayout({
    "crc":      32,
    "reserved": 32,
})



# NI TLB -----------------------------------------------------------------------------------------

#: What a translation allows: the NI reading the page to send it (DMA send from the owner's
#: memory), and remote nodes writing it (receive window).
TlbPermissions = data.StructLayout({
    "local_read":   1,
    "remote_write": 1,
})


class TlbStatus(enum.Enum, shape=2):
    """Outcome of an NI TLB lookup; exactly one per request."""
    #: A valid entry of the ASID maps the page and grants the access; ``ppn`` is its frame.
    HIT = 0
    #: No valid entry maps the page for the ASID: the OS is asked to fill, the requester waits.
    MISS = 1
    #: The page is mapped but the entry does not grant the access (local read or remote write).
    PERMISSION_FAULT = 2
    #: The page is mapped and writable remotely, but the message's key is not the window's.
    KEY_FAULT = 3


TlbResponse = data.StructLayout({
    "status": TlbStatus,
    "ppn":    PPN_BITS,      # the frame on HIT, zero otherwise
})


class TlbOp(enum.Enum, shape=2):
    """NI TLB management commands (from the OS port)."""
    #: Map (asid, vpn) to ppn with permissions and key; replaces an entry of the same page.
    FILL = 0
    #: Remove the entry of (asid, vpn), if any.
    INVALIDATE = 1
    #: Remove every entry of asid.
    INVALIDATE_ASID = 2
    #: Remove every entry.
    INVALIDATE_ALL = 3


def tlb_entry_layout(asid_bits=ASID_BITS):
    """Return the layout of one NI TLB entry for ``asid_bits``-wide ASIDs."""
    return data.StructLayout({
        "valid": 1,
        "asid":  asid_bits,
        "vpn":   VPN_BITS,
        "ppn":   PPN_BITS,
        "perm":  TlbPermissions,
        "key":   KEY_BITS,
    })


def tlb_lookup_layout(asid_bits=ASID_BITS):
    """Return the layout of an NI TLB lookup request (``key`` is checked on receive only)."""
    return data.StructLayout({
        "asid": asid_bits,
        "va":   VA_BITS,
        "key":  KEY_BITS,
    })


def tlb_command_layout(asid_bits=ASID_BITS):
    """Return the layout of an NI TLB management command; fields an op does not use are ignored."""
    return data.StructLayout({
        "op":   TlbOp,
        "asid": asid_bits,
        "vpn":  VPN_BITS,
        "ppn":  PPN_BITS,
        "perm": TlbPermissions,
        "key":  KEY_BITS,
    })



# Message buffer ---------------------------------------------------------------------------------

#: A cache line: the unit of the message buffer, of coherence and of DRAM transfers.
LINE_BYTES = 64
LINE_WORDS = LINE_BYTES // FLIT_BYTES
#: Physical line addresses (a physical address without its offset in the line).
LINE_ADDR_BITS = PA_BITS - (LINE_BYTES.bit_length() - 1)


class MsgBufTxOp(enum.Enum, shape=2):
    """Operations on a message-buffer line staged for sending (the ``tx_cmd`` port)."""
    #: Write one word of the line (PIO payload, descriptor, or DMA-prefetched data).
    WRITE = 0
    #: Read one word of the line for transmission; answered on ``tx_data``, in order.
    READ = 1
    #: Return the line to the free pool.
    FREE = 2


def msgbuf_line_index_layout(lines):
    """Return the layout naming one of ``lines`` message-buffer lines."""
    return data.StructLayout({"line": range(lines)})


def msgbuf_tx_command_layout(lines):
    """Return the layout of a ``tx_cmd`` operation on one of ``lines`` message-buffer lines."""
    return data.StructLayout({
        "op":   MsgBufTxOp,
        "line": range(lines),
        "word": range(LINE_WORDS),
        "data": FLIT_DATA_BITS,     # WRITE only
    })


#: One word read out of a line (``tx_data``, and the read data of ``mem_read``).
WordBeat = data.StructLayout({
    "data": FLIT_DATA_BITS,
    "last": 1,                  # the word is the line's last (word LINE_WORDS - 1)
})

#: Announces an arriving line to the message buffer (``rx_line``): which physical line, and which
#: of its words the fill that follows on ``rx_data`` writes (bit ``i``: word ``i``).
RxLineRequest = data.StructLayout({
    "addr":  LINE_ADDR_BITS,
    "words": LINE_WORDS,
})

#: The line the next announcement on ``rx_line`` will name (``rx_next``), given ahead so that the
#: message buffer compares its tags in the cycle before: see :class:`rtl.msgbuf.MessageBuffer`.
RxLineHint = data.StructLayout({
    "valid": 1,
    "addr":  LINE_ADDR_BITS,
})

#: One word of an arriving line (``rx_data``); ``last`` marks the fill's final beat.
RxFillBeat = data.StructLayout({
    "word": range(LINE_WORDS),
    "data": FLIT_DATA_BITS,
    "last": 1,
})

#: A probe by physical line address (``mc_lookup``, ``ni_read``, ``coh_req``, ``mem_read``).
LineRequest = data.StructLayout({
    "addr": LINE_ADDR_BITS,
})

#: The answer to a probe (``mc_data``, ``ni_data``): a miss is one beat with ``hit`` low and
#: ``last`` high; a hit is the line's words in order, ``last`` on the final one.
LineBeat = data.StructLayout({
    "hit":  1,
    "data": FLIT_DATA_BITS,
    "last": 1,
})

#: The core caches' answer to a coherence request (``coh_resp``): one beat with ``dirty`` low when
#: no cache held the line dirty (every copy is gone); else the dirty line's words in order, with
#: ``dirty`` high, ``last`` on the final one.
CohResponse = data.StructLayout({
    "dirty": 1,
    "data":  FLIT_DATA_BITS,
    "last":  1,
})

#: A line written back to memory (``mem_write``): its words in order, each carrying the address.
MemWriteBeat = data.StructLayout({
    "addr": LINE_ADDR_BITS,
    "data": FLIT_DATA_BITS,
    "last": 1,
})


# Lock table and notifier --------------------------------------------------------------------------

#: Threads are named by an OS-wide thread number this wide (the core's contexts hold threads).
THREAD_BITS = 8
#: SMT contexts of a core (DESIGN default 4, at most 8).
CONTEXT_BITS = 3
MAX_CONTEXTS = 1 << CONTEXT_BITS


#: Lock-table entries that core-side operations may not take: kept for SIGNAL, so that a SIGNAL
#: waits for a free entry only while that many locks hold remembered signals nobody waited for.
LOCK_SIGNAL_RESERVE = 1


class LockOp(enum.Enum, shape=2):
    """Core-side lock-table operations (the ``request`` port of the LockTable).

    A lock is named by (ASID, virtual address) and is either a mutex (ACQUIRE, RELEASE) or a
    notification lock (WAIT here, SIGNAL from the NI); its first operation decides which."""
    #: Take the mutex, or park the thread until it is handed over (first come, first served).
    ACQUIRE = 0
    #: Give the mutex up; the oldest parked thread gets it.
    RELEASE = 1
    #: Consume a signal: at once if one is remembered, else park until the lock is signalled.
    WAIT = 2


class LockKind(enum.Enum, shape=1):
    """What a lock entry is, decided by the operation that allocated it."""
    #: ACQUIRE and RELEASE: one owner at a time, parked threads handed the lock in order.
    MUTEX = 0
    #: WAIT (core) and SIGNAL (NI): a count of remembered signals, parked threads woken in order.
    EVENT = 1


class LockStatus(enum.Enum, shape=3):
    """The answer to a core-side lock operation; exactly one per request."""
    #: ACQUIRE took the mutex, RELEASE gave it up, or WAIT consumed a remembered signal.
    GRANTED = 0
    #: The thread is parked; a ``released`` event (or, if it is not resident, the OS) follows.
    BLOCKED = 1
    #: No free lock entry or waiter slot: nothing changed; retry later or take the OS path.
    FULL = 2
    #: RELEASE of a mutex the thread does not hold: nothing changed.
    NOT_OWNER = 3
    #: A mutex operation on a notification lock, or WAIT on a mutex: nothing changed.
    WRONG_KIND = 4


LockRequest = data.StructLayout({
    "op":     LockOp,
    "asid":   ASID_BITS,
    "addr":   VA_BITS,
    "thread": THREAD_BITS,      # the requesting thread
})

LockResponse = data.StructLayout({
    "status": LockStatus,
    "thread": THREAD_BITS,      # the requesting thread, echoed
})

#: The NI's side of the lock table: a message arrived for the notification lock (asid, addr).
LockSignal = data.StructLayout({
    "asid": ASID_BITS,
    "addr": VA_BITS,
})

#: A parked thread may go on (it holds the mutex, or consumed a signal); sent to the core for a
#: resident thread, naming the context it is in and the lock, so that the core wakes the right
#: operation when a handler parked on one lock runs over its thread parked on another.
LockReleased = data.StructLayout({
    "context": CONTEXT_BITS,
    "thread":  THREAD_BITS,
    "asid":    ASID_BITS,
    "addr":    VA_BITS,
})


class LockOsReason(enum.Enum, shape=1):
    """Why the lock table hands an event to the OS."""
    #: A parked thread was released while it is not resident: the OS makes it runnable.
    NOT_RESIDENT = 0
    #: A SIGNAL named a mutex: it changed nothing.
    BAD_SIGNAL = 1


LockOsEvent = data.StructLayout({
    "reason": LockOsReason,
    "thread": THREAD_BITS,      # NOT_RESIDENT only
    "asid":   ASID_BITS,
    "addr":   VA_BITS,
})

#: Which thread an SMT context holds (written by the OS when it schedules or evicts a thread).
Residency = data.StructLayout({
    "context":  CONTEXT_BITS,
    "resident": 1,              # low: the context holds no thread
    "thread":   THREAD_BITS,
})


class NotifyMode(enum.Enum, shape=3):
    """How an endpoint's arrivals reach user code."""
    #: Nothing: the receiver polls its completion ring.
    NONE = 0
    #: SIGNAL the endpoint's notification lock in the lock table.
    LOCK = 1
    #: Make the endpoint's resident thread branch to its handler.
    BRANCH = 2
    #: Start the handler as a new thread on a free (or evictable) SMT context.
    SPAWN = 3
    #: Interrupt the OS, which takes the kernel's interrupt path and runs the handler in the
    #: endpoint's thread as a signal would (the baseline of :mod:`behavioral.kernel`).
    INTERRUPT = 4


#: One entry of the Notifier's endpoint table, written by the OS.
NotifierEndpoint = data.StructLayout({
    "mode":       NotifyMode,
    "asid":       ASID_BITS,
    "thread":     THREAD_BITS,  # BRANCH, INTERRUPT: the thread notified; SPAWN: the thread started
    "lock":       VA_BITS,      # LOCK: the lock signalled (in ``asid``)
    "handler_pc": VA_BITS,      # BRANCH, SPAWN, INTERRUPT
    "stack":      VA_BITS,      # SPAWN: the new thread's stack pointer
})

#: One entry of the Notifier's context table: what an SMT context holds.
NotifierContext = data.StructLayout({
    "busy":      1,             # the context holds a thread
    "evictable": 1,             # the OS allows SPAWN to evict that thread
    "thread":    THREAD_BITS,
})


class NotifierCommandOp(enum.Enum, shape=1):
    """Notifier management commands (from the OS port)."""
    WRITE_ENDPOINT = 0
    WRITE_CONTEXT = 1


def notifier_command_layout(endpoints, contexts):
    """Return the layout of a Notifier management command for ``endpoints`` endpoints and
    ``contexts`` contexts; ``index`` names the endpoint or context written."""
    return data.StructLayout({
        "op":       NotifierCommandOp,
        "index":    range(max(endpoints, contexts, 2)),     # at least a bit wide
        "endpoint": NotifierEndpoint,
        "context":  NotifierContext,
    })


#: The Notifier's counters, one per path an arrival can take, and of returns that matched no
#: handler (``count_<name>`` members of :class:`rtl.notifier.Notifier`).
NOTIFIER_COUNTERS = ("none", "lock", "branch", "queued", "spawn", "evict", "os", "interrupt",
                     "bad_returns")


#: A message's completion entry has been written: notify endpoint ``endpoint``; ``entry`` is the
#: entry's virtual address, handed to the handler.
Completion = data.StructLayout({
    "endpoint": ENDPOINT_BITS,
    "entry":    VA_BITS,
})


class NotifyEventKind(enum.Enum, shape=1):
    """What the Notifier asks of the core."""
    #: Context ``context`` (running ``thread``) branches to ``pc`` with ``entry``.
    BRANCH = 0
    #: Context ``context`` starts ``thread`` at ``pc`` with stack ``sp`` and ``entry``; if
    #: ``evict`` is set, the thread it held (``evicted``) is first saved for the OS.
    SPAWN = 1


NotifyEvent = data.StructLayout({
    "kind":     NotifyEventKind,
    "evict":    1,
    "context":  CONTEXT_BITS,
    "thread":   THREAD_BITS,
    "evicted":  THREAD_BITS,
    "endpoint": ENDPOINT_BITS,
    "pc":       VA_BITS,
    "sp":       VA_BITS,
    "entry":    VA_BITS,
})


class HandlerReturnOp(enum.Enum, shape=1):
    """What the core tells the Notifier when notified code ends."""
    #: The BRANCH handler of ``endpoint`` returned to the interrupted thread.
    RETURN = 0
    #: The thread in ``context`` exited: the context is free.
    EXIT = 1


HandlerReturn = data.StructLayout({
    "op":       HandlerReturnOp,
    "endpoint": ENDPOINT_BITS,
    "context":  CONTEXT_BITS,
})


class NotifyOsReason(enum.Enum, shape=3):
    """Why the Notifier hands an arrival to the OS (which delivers it later)."""
    #: BRANCH to a thread that is in no context.
    NOT_RESIDENT = 0
    #: BRANCH while the handler runs and the endpoint's queue is full.
    QUEUE_OVERFLOW = 1
    #: SPAWN with no free and no evictable context.
    NO_CONTEXT = 2
    #: A completion named an endpoint the Notifier does not have.
    BAD_ENDPOINT = 3
    #: An arrival at an endpoint armed with INTERRUPT.
    INTERRUPT = 4


NotifyOsEvent = data.StructLayout({
    "reason":   NotifyOsReason,
    "endpoint": ENDPOINT_BITS,
    "thread":   THREAD_BITS,
    "entry":    VA_BITS,
})


# Network interface: send descriptors, completion entries, MMIO map, OS interface -------------------

#: Every endpoint has one 4 KiB user page in the NI's MMIO window; an MMIO address is the
#: endpoint number above the offset in its page.
MMIO_ADDR_BITS = ENDPOINT_BITS + PAGE_BITS


class SendFlags(enum.Flag, shape=8):
    """How a send descriptor's payload reaches the wire (any other bit set is a bad descriptor)."""
    #: The NI reads the payload from the sender's memory at ``local_va`` (else: PIO, the payload
    #: is the one written into the endpoint's TX slot).
    DMA = 1
    #: The receiver's NI notifies the receiving endpoint by its armed mode.
    NOTIFY = 2


#: A send, as user code writes it into its endpoint's TX slot (words 0..3 of the user page).
SendDescriptor = data.StructLayout({
    # word 0
    "dst_node":     NODE_BITS,
    "dst_endpoint": ENDPOINT_BITS,
    "flags":        8,              # SendFlags; a plain field, so that bad bits can be sent
    "length":       LENGTH_BITS,    # payload bytes: a multiple of 8, at most MAX_PAYLOAD_BYTES
    "key":          KEY_BITS,       # the receive window's key
    "reserved0":    20,
    # word 1
    "remote_va":    VA_BITS,        # where the payload lands in the receiver's window
    "reserved1":    16,
    # word 2
    "local_va":     VA_BITS,        # DMA: where the payload is in the sender's memory
    "reserved2":    16,
    # word 3
    "metadata":     64,             # handed to the receiver in the completion entry
})
DESCRIPTOR_WORDS = SendDescriptor.size // FLIT_DATA_BITS


class TxError(enum.Enum, shape=3):
    """Why the NI refused or abandoned a send (the ``error`` field of the TX status)."""
    NONE = 0
    #: Length not a multiple of 8 bytes, or above MAX_PAYLOAD_BYTES.
    BAD_LENGTH = 1
    #: The destination node is not in the system.
    BAD_NODE = 2
    #: A flag bit that means nothing is set.
    BAD_FLAGS = 3
    #: DMA: the sender may not read a page of the payload (no flit was sent).
    DMA_FAULT = 4
    #: DMA: a page of the payload was unmapped and the OS rejected the fill (no flit was sent).
    DMA_REJECTED = 5


#: The TX status of an endpoint (the user page's STATUS register). ``busy`` is set by the doorbell,
#: which clears ``error``, and cleared when the last flit has left or the send was refused; then
#: ``error`` tells which.
TxStatus = data.StructLayout({
    "busy":  1,
    "error": TxError,
    "sent":  16,                # sends completed without error, modulo 2**16
})

#: A word written into an endpoint's TX slot (the NI's MMIO decoder to the TX engine): descriptor
#: word ``word`` (0..DESCRIPTOR_WORDS-1) or payload word ``word`` (0..MAX_PAYLOAD_BYTES/8-1).
TxSlotWrite = data.StructLayout({
    "endpoint":   ENDPOINT_BITS,
    "descriptor": 1,
    "word":       8,
    "data":       64,
})

#: A doorbell: send what endpoint ``endpoint``'s TX slot holds, in address space ``asid``.
Doorbell = data.StructLayout({
    "endpoint": ENDPOINT_BITS,
    "asid":     ASID_BITS,
})

#: The OS's answer to an engine's oldest TLB miss: retry the lookup, or give up the message.
MissAnswer = data.StructLayout({
    "reject": 1,
})

#: A read of payload word ``word`` of the TX slot of the send in progress (the TX engine's
#: :class:`rtl.fetcher.PayloadFetcher` to the engine's slot RAM).
TxSlotRead = data.StructLayout({
    "word": range(MAX_PAYLOAD_WORDS),
})


def tx_send_layout(asid_bits=ASID_BITS):
    """Return the layout of a send that the TX engine's scheduler hands its
    :class:`rtl.sendchecker.SendChecker`: the doorbelled endpoint, the doorbell's ASID
    (``asid_bits`` wide, as the NI TLB's), the endpoint's descriptor, and the sequence number the
    message will carry."""
    return data.StructLayout({
        "endpoint":   ENDPOINT_BITS,
        "asid":       asid_bits,
        "seq":        MessageHeader["seq"].width,
        "descriptor": SendDescriptor,
    })


#: A send that passed its checks and translation (the TX engine's
#: :class:`rtl.sendchecker.SendChecker` to its :class:`rtl.fetcher.PayloadFetcher`): the message's
#: header, and where its payload is: the TX slot, or (``dma``) memory from byte ``offset`` of frame
#: ``ppn`` on, running into frame ``next_ppn`` if the payload crosses the page's end.
SendPlan = data.StructLayout({
    "header":   MessageHeader,
    "dma":      1,
    "offset":   PAGE_BITS,      # the low three bits are ignored: the payload is word aligned
    "ppn":      PPN_BITS,
    "next_ppn": PPN_BITS,
})


class CompletionStatus(enum.Enum, shape=4):
    """What a completion entry reports."""
    #: The payload is in the receiver's memory at ``landing_va``.
    DELIVERED = 0
    #: The remote VA was unmapped and the OS rejected the fill: no memory was written.
    REJECTED = 1


#: One entry of an endpoint's completion ring in user memory, written by the receiving NI after
#: the payload. Entries are :data:`COMPLETION_BYTES` apart; a ring of ``2**ring_log2`` entries.
CompletionEntry = data.StructLayout({
    # word 0
    "src_node":     NODE_BITS,
    "src_endpoint": ENDPOINT_BITS,
    "status":       CompletionStatus,
    "reserved0":    4,
    "length":       LENGTH_BITS,
    "reserved1":    4,
    "seq":          16,
    "reserved2":    16,
    # word 1
    "landing_va":   VA_BITS,
    "reserved3":    16,
    # word 2
    "metadata":     64,
    # word 3
    "stamp":        64,             # the receiving NI's cycle count when the last flit came in
})
COMPLETION_WORDS = CompletionEntry.size // FLIT_DATA_BITS
COMPLETION_BYTES = COMPLETION_WORDS * FLIT_BYTES


class UserReg(enum.Enum, shape=PAGE_BITS):
    """Byte offsets in an endpoint's user page. Every access is a 64-bit word."""
    #: The send descriptor, DESCRIPTOR_WORDS words (write).
    DESCRIPTOR = 0x000
    #: Write (any value): send what the TX slot holds. Read: zero.
    DOORBELL = 0x020
    #: Read: :data:`TxStatus`.
    STATUS = 0x028
    #: Read/write: the index of the next completion entry the user will consume (mod 2**16).
    RING_HEAD = 0x030
    #: Read: the index of the next completion entry the NI will write (mod 2**16).
    RING_TAIL = 0x038
    #: Write: the :class:`NotifyMode`; takes effect with ARM_LOCK, ARM_HANDLER and ARM_STACK. A
    #: value that is no NotifyMode answers BAD_ADDRESS and changes nothing.
    ARM_MODE = 0x040
    #: Write: the notification lock (a VA in the endpoint's address space) for LOCK.
    ARM_LOCK = 0x048
    #: Write: the handler's PC for BRANCH, SPAWN and INTERRUPT.
    ARM_HANDLER = 0x050
    #: Write: the stack pointer of a SPAWNed handler.
    ARM_STACK = 0x058
    #: The PIO payload, MAX_PAYLOAD_BYTES from here to the page's end (write).
    PAYLOAD = 0x800


class MmioStatus(enum.Enum, shape=2):
    """The answer to a user-level MMIO access."""
    OK = 0
    #: The requesting ASID does not own the endpoint: no effect; reported to the OS.
    FOREIGN_ASID = 1
    #: No register at that offset, a read of a write-only register, an endpoint the NI does not
    #: have, or an ARM_MODE value that is no :class:`NotifyMode`: no effect.
    BAD_ADDRESS = 2
    #: A write into the TX slot while its send is in progress: no effect; retry after STATUS
    #: shows it idle.
    SLOT_BUSY = 3


MmioRequest = data.StructLayout({
    "write": 1,
    "asid":  ASID_BITS,             # the requesting thread's address space
    "addr":  MMIO_ADDR_BITS,        # endpoint << PAGE_BITS | offset; word aligned
    "data":  64,
})

MmioResponse = data.StructLayout({
    "status": MmioStatus,
    "data":   64,
})


#: One entry of the NI's endpoint table, written by the OS: who owns the endpoint and where its
#: completion ring is (physically contiguous, COMPLETION_BYTES-aligned; its VA is what handlers
#: are given).
EndpointEntry = data.StructLayout({
    "enabled":   1,
    "asid":      ASID_BITS,
    "thread":    THREAD_BITS,       # the thread BRANCH redirects and SPAWN starts as
    "ring_log2": 4,                 # 2**ring_log2 entries, 1 to 2**15
    "ring_pa":   PA_BITS,
    "ring_va":   VA_BITS,
})


class NiOsOp(enum.Enum, shape=3):
    """Privileged NI commands (the ``os`` port)."""
    #: Write endpoint ``index``'s table entry (``endpoint``); its ring restarts empty and its
    #: armed mode goes back to NONE.
    WRITE_ENDPOINT = 0
    #: Pass ``tlb`` to the NI TLB (fill or invalidate).
    TLB = 1
    #: Write SMT context ``index`` (``context``): the Notifier's context table and the lock
    #: table's residency.
    WRITE_CONTEXT = 2
    #: Answer the oldest TLB miss of engine ``engine``: retry the lookup (after a FILL) or reject.
    MISS_ANSWER = 3
    #: Set the NI's tunable ``index`` (:class:`NiTunable`) to ``value``, from the next message
    #: on; a value outside the tunable's range changes nothing.
    TUNE = 4


class NiTunable(enum.Enum, shape=ENDPOINT_BITS):
    """What the OS may tune at run time (a TUNE command's ``index``), each up to what the NI was
    elaborated with."""
    #: DMA lines the TX engine fetches ahead of the wire, 1 to its ``send_buffering``.
    SEND_BUFFERING = 0
    #: Cycles per flit of the link into the node (the Fabric's output to it), 1 to the
    #: System's ``max_cycles_per_flit``; only a System built with one has it.
    CYCLES_PER_FLIT = 1


class NiEngine(enum.Enum, shape=1):
    """The NI's two translating engines."""
    TX = 0
    RX = 1


#: The OS port's write of endpoint ``index``'s table entry (:class:`rtl.osport.OsPort` to
#: :class:`rtl.mmio.MmioDecoder`); the endpoint's ring restarts empty.
EndpointWrite = data.StructLayout({
    "index": ENDPOINT_BITS,
    "entry": EndpointEntry,
})


def ni_os_command_layout(asid_bits=ASID_BITS):
    """Return the layout of a privileged NI command; fields its op does not use are ignored."""
    return data.StructLayout({
        "op":       NiOsOp,
        "index":    ENDPOINT_BITS,
        "endpoint": EndpointEntry,
        "tlb":      tlb_command_layout(asid_bits),
        "context":  NotifierContext,
        "engine":   NiEngine,
        "reject":   1,
        "value":    16,
    })


class NiFaultKind(enum.Enum, shape=4):
    """What the NI reports to the OS on its ``fault`` port."""
    #: A user MMIO access by an ASID that does not own the endpoint.
    FOREIGN_ASID = 0
    #: A TX (DMA) lookup missed: answer with MISS_ANSWER for TX.
    TX_MISS = 1
    #: An RX lookup missed: answer with MISS_ANSWER for RX.
    RX_MISS = 2
    #: DMA from a page the sender may not read.
    TX_PERMISSION = 3
    #: A message to a page not remotely writable: discarded.
    RX_PERMISSION = 4
    #: A message with the wrong window key: discarded.
    RX_KEY = 5
    #: CRC mismatch: discarded.
    BAD_CRC = 6
    #: ``last`` before the length the header gives, or none where it should be: discarded.
    TRUNCATED = 7
    #: Not for this node, not a PUT, or a bad length: discarded.
    BAD_HEADER = 8
    #: To an endpoint the NI does not have or that is disabled: discarded.
    BAD_ENDPOINT = 9
    #: The OS rejected an RX fill: an error completion was written, no memory.
    RX_REJECTED = 10


NiFault = data.StructLayout({
    "kind":     NiFaultKind,
    "endpoint": ENDPOINT_BITS,      # the sending (TX) or receiving (RX, MMIO) endpoint
    "asid":     ASID_BITS,
    "va":       VA_BITS,            # the page missed or refused
    "node":     NODE_BITS,          # RX: the source node
})

#: The TX engine's counters (``count_<name>`` members of :class:`rtl.txengine.TxEngine`).
TX_COUNTERS = ("sent", "refused", "dma_lines", "misses", "dma_cycles",
               "dma_buffer_word_cycles")

#: The RX engine's counters (``count_<name>`` members of :class:`rtl.rxengine.RxEngine`).
RX_COUNTERS = ("delivered", "rejected", "bad_crc", "truncated", "bad_header", "bad_endpoint",
               "key_faults", "permission_faults", "misses", "ring_full_cycles")


def rx_lookup_layout(asid_bits=ASID_BITS):
    """Return the layout of a message's translation request (the RX engine's receiver to its
    :class:`rtl.translator.RxTranslator`): the pages of ``va .. va + length - 1``, the low three
    bits of ``va`` ignored, in ASID ``asid`` (``asid_bits`` wide, as the NI TLB's) with ``key``."""
    return data.StructLayout({
        "asid":   asid_bits,
        "key":    KEY_BITS,
        "va":     VA_BITS,
        "length": LENGTH_BITS,
    })


#: A message's translation as it stands (:class:`rtl.translator.RxTranslator`), counting an answer
#: of the NI TLB arriving in the same cycle.
RxTranslation = data.StructLayout({
    "done":   1,                # every page looked up has its answer
    "status": TlbStatus,        # the first page's (in order) answer that was not HIT; else HIT
    "va":     VA_BITS,          # that page's VA
    "ppn":    data.ArrayLayout(PPN_BITS, 2),    # each page's frame, where it hit
})

#: A message that passed its checks and translation (or was rejected), as the RX engine's
#: receiver hands it to its packet queue and the queue to its writer (:mod:`rtl.rxengine`): what
#: writing its payload and completion entry needs.
RxJob = data.StructLayout({
    "src_node":     NODE_BITS,
    "src_endpoint": ENDPOINT_BITS,
    "dst_endpoint": ENDPOINT_BITS,
    "notify":       1,
    "rejected":     1,              # no payload is written, the entry says REJECTED
    "length":       LENGTH_BITS,
    "seq":          16,
    "remote_va":    VA_BITS,
    "metadata":     64,
    "stamp":        64,             # the receiver's cycle count as the trailer was taken
    # the endpoint's ring, as the endpoint table had it when the message's first flit came in
    "ring_log2":    4,
    "ring_pa":      PA_BITS,
    "ring_va":      VA_BITS,
    "ppn":          data.ArrayLayout(PPN_BITS, 2),  # the frames of the payload's pages
})

#: A payload word of the message coming in, for the RX engine's staging RAM
#: (:class:`rtl.packetqueue.PacketQueue`, two largest payloads). The counts are as wide as the
#: RAM's addresses and free-word count they are added to and compared with, as Verilator's -Wall
#: asks for.
RxStagedWord = data.StructLayout({
    "index": range(2 * MAX_PAYLOAD_WORDS),      # its place in the payload
    "words": range(2 * MAX_PAYLOAD_WORDS + 1),  # the payload words the message keeps
    "data":  FLIT_DATA_BITS,
})


HEADER_FLITS = MessageHeader.size // FLIT_DATA_BITS
TRAILER_FLITS = Trailer.size // FLIT_DATA_BITS

assert MessageHeader.size == HEADER_FLITS * FLIT_DATA_BITS
assert Trailer.size == TRAILER_FLITS * FLIT_DATA_BITS
assert MessageHeader["dst_node"].offset + NODE_BITS <= FLIT_DATA_BITS, "routing needs flit 0 only"
assert MAX_PAYLOAD_BYTES < (1 << LENGTH_BITS)
assert SendDescriptor.size == DESCRIPTOR_WORDS * FLIT_DATA_BITS
assert CompletionEntry.size == COMPLETION_WORDS * FLIT_DATA_BITS
assert UserReg.PAYLOAD.value + MAX_PAYLOAD_BYTES == 1 << PAGE_BITS

#: Flits of the longest message a node sends.
MAX_MESSAGE_FLITS = HEADER_FLITS + MAX_PAYLOAD_BYTES // FLIT_BYTES + TRAILER_FLITS


class LinkFaultKind(enum.Enum, shape=2):
    """What a link fault injector (:class:`rtl.faults.LinkFaultInjector`) does to one message;
    :func:`behavioral.message.apply_link_fault` is its model."""
    #: Flip bit ``bit`` of flit ``flit`` (nothing if the message is shorter).
    CORRUPT = 0
    #: Set ``last`` on flit ``flit`` and drop the flits after it (nothing if ``flit`` is the
    #: message's last or beyond).
    TRUNCATE = 1
    #: Clear ``last`` on the message's last flit and add one flit after it: that flit's data
    #: with bit ``bit`` flipped, ``last`` set.
    APPEND = 2


#: A fault to inject into the next message that starts on a link.
LinkFault = data.StructLayout({
    "kind": LinkFaultKind,
    "flit": range(MAX_MESSAGE_FLITS),
    "bit":  range(FLIT_DATA_BITS),
})


# AXI: the bus-standard shell of the NI (:class:`rtl.axi.NetworkInterfaceAXI`) ------------------

#: Data width of every AXI port of the shell.
AXI_DATA_BITS = 64


class AxiResp(enum.Enum, shape=2):
    """An AXI write or read response (``BRESP``, ``RRESP``)."""
    OKAY = 0
    EXOKAY = 1
    #: The access reached the NI and was refused: no effect.
    SLVERR = 2
    DECERR = 3


def axi_lite_access_layout(addr_width):
    """Return the layout of one AXI4-Lite access as :class:`rtl.axi.AxiLiteTarget` hands it on:
    its address and, for a write, its data and byte strobes."""
    return data.StructLayout({
        "write": 1,
        "addr":  addr_width,
        "data":  AXI_DATA_BITS,
        "strb":  AXI_DATA_BITS // 8,
    })


#: The answer to an AXI4-Lite access: ``error`` answers SLVERR; ``data`` is a read's.
AxiLiteAnswer = data.StructLayout({
    "error": 1,
    "data":  AXI_DATA_BITS,
})


def axis_data_bits(layout):
    """Return the ``TDATA`` width that carries ``layout`` on an AXI4-Stream port of the shell:
    the layout's bits from bit 0, padded to whole bytes with zeros."""
    return -(-data.Layout.cast(layout).size // 8) * 8


#: Words of a privileged command in the OS page (:class:`OsReg`), and of each event register.
OS_COMMAND_WORDS = -(-ni_os_command_layout().size // AXI_DATA_BITS)
OS_EVENT_WORDS = 2

#: The counters the OS page reads, one word each from :attr:`OsReg.COUNTERS` on, in this order:
#: the TX engine's, the RX engine's and the Notifier's (``count_tx_*``, ``count_rx_*`` and
#: ``count_notify_*`` of :class:`rtl.ni.NetworkInterface`), then the AXI responses other than
#: OKAY that the shell's memory port got (``axi_errors``).
OS_COUNTERS = (*(f"tx_{name}" for name in TX_COUNTERS), *(f"rx_{name}" for name in RX_COUNTERS),
               *(f"notify_{name}" for name in NOTIFIER_COUNTERS), "axi_errors")


class OsReg(enum.Enum, shape=PAGE_BITS):
    """Byte offsets in the shell's OS page (``s_axil_os``). Every access is a whole 64-bit word;
    anything else, and an offset with no register, answers SLVERR and changes nothing."""
    #: Write: the privileged command (:func:`ni_os_command_layout`), word ``i`` its bits
    #: ``64 i`` up, OS_COMMAND_WORDS words; read: what was written.
    COMMAND = 0x000
    #: Write (any value): hand the command to the NI; answered once the NI has taken it.
    ISSUE = 0x040
    #: Read: the oldest fault (:data:`NiFault`), OS_EVENT_WORDS words: word 0 its bits 0-63, word
    #: 1 the bits above with bit 63 set if there is a fault. Reading word 1 takes the fault.
    FAULT = 0x080
    #: Read: the lock table's oldest event (:data:`LockOsEvent`), as FAULT.
    LOCK_EVENT = 0x090
    #: Read: the Notifier's oldest event (:data:`NotifyOsEvent`), as FAULT.
    NOTIFY_EVENT = 0x0A0
    #: Read: bit 0 a fault waits, bit 1 a lock event, bit 2 a Notifier event (``irq`` is their
    #: OR).
    PENDING = 0x0B0
    #: Read: the counters of :data:`OS_COUNTERS`, one word each (32 bits, wrapping).
    COUNTERS = 0x100


assert OS_COMMAND_WORDS * 8 <= OsReg.ISSUE.value
assert NiFault.size <= 2 * AXI_DATA_BITS - 1 and LockOsEvent.size <= 2 * AXI_DATA_BITS - 1
assert NotifyOsEvent.size <= 2 * AXI_DATA_BITS - 1
assert OsReg.COUNTERS.value + 8 * len(OS_COUNTERS) <= 1 << PAGE_BITS


class Codec:
    """Pack and unpack Python integers through the field offsets of a layout.

    The field table is computed once, so packing costs a few shifts per field: cheap enough for
    testbenches that pack every flit.

    Parameters
    ----------
    layout : :class:`amaranth.lib.data.Layout` or shape-castable
        The format. Fields whose shape is an :class:`amaranth.lib.enum.Enum` unpack to members;
        fields that are layouts themselves pack from and unpack to dicts (or pack from ints).
    """

    def __init__(self, layout):
        self._layout = data.Layout.cast(layout)
        self._width = self._layout.size         # a layout computes its size at every ask
        self._fields = {}
        for name, field in self._layout:
            shape = field.shape
            if isinstance(shape, type) and issubclass(shape, py_enum.Enum):
                kind = shape
            elif isinstance(shape, data.Layout):
                kind = codec(shape)
            else:
                kind = None
            self._fields[name] = (field.offset, field.width, kind)

    @property
    def layout(self):
        return self._layout

    @property
    def width(self):
        return self._width

    def pack(self, **values):
        """Return the integer holding ``values``; fields not named are zero.

        A value may be an integer, an enum member, or a dict for a field that is a layout.

        Raises
        ------
        :exc:`ValueError`
            If a field name is unknown or a value does not fit its field.
        """
        bits = 0
        for name, value in values.items():
            try:
                offset, width, _ = self._fields[name]
            except KeyError:
                raise ValueError(f"unknown field {name!r}; the fields are "
                                 f"{', '.join(self._fields)}") from None
            if isinstance(value, py_enum.Enum):
                value = value.value
            elif isinstance(value, dict):
                value = self._fields[name][2].pack(**value)
            value = int(value)
            if not 0 <= value < (1 << width):
                raise ValueError(f"field {name!r} is {width} bits wide; {value:#x} does not fit")
            bits |= value << offset
        return bits

    def unpack(self, bits):
        """Return a dict of every field of ``bits``; enum fields become enum members and layout
        fields dicts."""
        bits = int(bits)
        if not 0 <= bits < (1 << self._width):
            raise ValueError(f"{bits:#x} is wider than the {self._width}-bit layout")
        result = {}
        for name, (offset, width, kind) in self._fields.items():
            value = (bits >> offset) & ((1 << width) - 1)
            if isinstance(kind, Codec):
                value = kind.unpack(value)
            elif kind is not None:
                value = kind(value)
            result[name] = value
        return result

    def field(self, bits, name):
        """Return one field of ``bits`` as an integer."""
        offset, width, _ = self._fields[name]
        return (int(bits) >> offset) & ((1 << width) - 1)


@functools.cache
def codec(layout):
    """Return the :class:`Codec` of ``layout``, made once and shared: the one every model and
    testbench uses for that format (``codec(CompletionEntry).unpack(bits)``). Layouts made by a
    function with the same parameters are equal, so they share a codec too."""
    return Codec(layout)
