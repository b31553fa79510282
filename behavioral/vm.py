"""Behavioural operating system, second part: address spaces and the driver of the node's NI.

The rest of the OS (threads on contexts, deferred notifications) is :mod:`behavioral.os`; the
system testbench uses the two side by side. This module is the OS's memory management of one node
(:class:`AddressSpaces`: physical frames, processes and their ASIDs, page tables, receive windows,
completion rings) and its driver for the node's NI (:class:`NiDriver`: the privileged ``os``
port's commands and the answers to the ``fault`` port), as :mod:`rtl.ni`'s docstring defines
them.

Memory
    Physical memory is ``memory_bytes`` from PA 0; frames (4 KiB, :data:`rtl.layouts.PAGE_BITS`)
    are allocated from ``base_pa`` up, lowest free frame first, so PA 0 and what lies below
    ``base_pa`` (the kernel's own memory) are never handed out. :meth:`AddressSpaces.map` gives
    every page it touches a frame of its own (not contiguous); completion rings take contiguous
    frames (:meth:`AddressSpaces.map_ring`). :meth:`AddressSpaces.unmap` frees the frames.
    Memory contents are not kept here (that is :mod:`behavioral.memory`'s job).

Virtual addresses
    Each process has its own page table, (vpn) -> (ppn, permissions, key): ``local_read`` lets
    the NI read the page for a DMA send, ``remote_write`` lets a message land in it, ``key`` is
    the receive window's key. The top of the address space, from :data:`RING_VA_BASE` up, is
    where the OS places completion rings, each at the next page-aligned VA of its process (never
    reused, so a stale completion pointer never aliases a newer ring); :meth:`AddressSpaces.map`
    refuses it. A ring page grants the NI nothing: the NI writes rings by physical address, and no
    message may land in one.

NI TLB misses
    The NI reports a miss of its TX or RX engine on the ``fault`` port and waits for
    MISS_ANSWER. The driver answers one miss at a time, in the order they were reported (a single
    kernel fault handler), each taking ``miss_cycles`` (default 1,000 core cycles, 0.5 us at
    2 GHz: trap, page-table walk, return). The time passes through the ``later(delay_cycles,
    callback)`` hook given at construction, which calls ``callback(cycle)`` after
    ``delay_cycles`` core cycles, in the order of the calls for equal times:
    :meth:`behavioral.core.SMTCore.after` is one. The cost delays the answer only; it is not
    charged to any thread's counters.

    The page table is read when the handler finishes, not when the fault arrives, so that a fill
    never brings back a page unmapped (and invalidated) meanwhile. A page mapped in the faulting
    ASID is answered with a TLB FILL (its frame, permissions and key, whatever access missed: the
    NI checks permission and key itself on the retry) and then MISS_ANSWER retry; the NI takes
    the OS port's commands in order, so the fill is in the TLB before the retry. An unmapped page
    or an ASID with no process is answered with MISS_ANSWER reject.

Commands
    A command is sent as ``port.command(**fields)``, ``fields`` those of
    :func:`rtl.layouts.ni_os_command_layout` the op uses (the rest are zero, as
    :meth:`rtl.layouts.Codec.pack` leaves them): enum fields as members, nested layouts as
    dicts. The port is the testbench's binding of the RTL ``os_command`` stream, or the
    reference NI's command method.
"""

from collections import Counter, deque
from typing import NamedTuple

from rtl.layouts import (ASID_BITS, COMPLETION_BYTES, ENDPOINT_BITS, KEY_BITS, MAX_CONTEXTS,
                         PA_BITS, PAGE_BITS, THREAD_BITS, VA_BITS, NiEngine, NiFaultKind, NiOsOp,
                         NiTunable, TlbOp)

from .checks import check_range, is_int

__all__ = ["RING_VA_BASE", "PAGE_BYTES", "OutOfFrames", "Page", "Ring", "AddressSpaces",
           "NiDriver"]

PAGE_BYTES = 1 << PAGE_BITS
#: Completion rings are placed from here to the top of every virtual address space.
RING_VA_BASE = 0x7000_0000_0000
#: The largest ring the endpoint table can describe (``ring_log2`` is 4 bits, at most 15).
_MAX_RING_LOG2 = 15

_MISSES = {NiFaultKind.TX_MISS: NiEngine.TX, NiFaultKind.RX_MISS: NiEngine.RX}


class OutOfFrames(RuntimeError):
    """Physical memory has too few free frames (or no contiguous run long enough)."""


class Page(NamedTuple):
    """One page-table entry: its frame, its permissions (:data:`rtl.layouts.TlbPermissions`
    fields, 0 or 1) and its window key."""
    ppn: int
    perm: dict
    key: int


def _perm(local_read, remote_write):
    return {"local_read": int(bool(local_read)), "remote_write": int(bool(remote_write))}


class Ring(NamedTuple):
    """A completion ring: ``entries`` entries of COMPLETION_BYTES at ``va`` in its process,
    physically contiguous at ``pa``."""
    va: int
    pa: int
    entries: int

    @property
    def nbytes(self):
        """The ring's size in bytes."""
        return self.entries * COMPLETION_BYTES


def _pages(va, nbytes):
    """Return the VPNs of every page ``va .. va + nbytes - 1`` touches."""
    return range(va >> PAGE_BITS, ((va + nbytes - 1) >> PAGE_BITS) + 1)


def _check_span(va, nbytes, limit):
    """Check that ``va .. va + nbytes - 1`` is a non-empty range below ``limit``."""
    check_range("va", va, 0, limit - 1)
    check_range("nbytes", nbytes, 1, limit - va)


def _tlb_command(op, asid, vpn, page=None):
    """Return the ``os`` port command passing TLB command ``op`` for (asid, vpn)."""
    tlb = {"op": op, "asid": asid, "vpn": vpn}
    if page is not None:
        tlb.update(ppn=page.ppn, perm=page.perm, key=page.key)
    return {"op": NiOsOp.TLB, "tlb": tlb}


class AddressSpaces:
    """Physical frames, processes, ASIDs and page tables of one node; see the module docstring.

    Parameters
    ----------
    memory_bytes : int
        The node's physical memory, a whole number of pages, at most ``2**PA_BITS``.
    base_pa : int
        The lowest physical address handed out, page aligned, above 0 and below
        ``memory_bytes``.
    asid_bits : int
        ASID width, 1 to :data:`rtl.layouts.ASID_BITS` (the NI's ``asid_bits``).

    Attributes
    ----------
    processes : dict
        ASID -> process name.
    """

    def __init__(self, *, memory_bytes=1 << PA_BITS, base_pa=0x0010_0000, asid_bits=ASID_BITS):
        check_range("memory_bytes", memory_bytes, PAGE_BYTES, 1 << PA_BITS)
        if memory_bytes % PAGE_BYTES:
            raise ValueError(f"memory_bytes {memory_bytes:#x} must be a whole number of "
                             f"{PAGE_BYTES}-byte pages")
        check_range("base_pa", base_pa, PAGE_BYTES, memory_bytes - PAGE_BYTES)
        if base_pa % PAGE_BYTES:
            raise ValueError(f"base_pa {base_pa:#x} must be page aligned ({PAGE_BYTES} bytes)")
        check_range("asid_bits", asid_bits, 1, ASID_BITS)
        self.asid_bits = asid_bits
        self.processes = {}
        self._tables = {}                 # asid -> {vpn: Page}
        self._ring_cursor = {}            # asid -> VA of its next ring
        # One byte per frame, 1 while free: bytearray.find locates a free run in C.
        self._free = bytearray(base_pa >> PAGE_BITS) + b"\x01" * ((memory_bytes - base_pa)
                                                                   >> PAGE_BITS)

    @property
    def free_frames(self):
        """The number of frames not allocated."""
        return self._free.count(1)

    # Processes ----------------------------------------------------------------------------------

    def create_process(self, name):
        """Create a process with an empty address space; return its ASID (the lowest unused,
        from 1).

        Raises
        ------
        ValueError
            If a process of that name exists.
        RuntimeError
            If every ASID of ``asid_bits`` is taken.
        """
        if name in self.processes.values():
            raise ValueError(f"a process named {name!r} exists already (ASID "
                             f"{self.asid_of(name)}); pick another name")
        asid = next((a for a in range(1, 1 << self.asid_bits) if a not in self.processes), None)
        if asid is None:
            raise RuntimeError(f"all {(1 << self.asid_bits) - 1} ASIDs of asid_bits "
                               f"{self.asid_bits} are in use; no room for process {name!r}")
        self.processes[asid] = name
        self._tables[asid] = {}
        self._ring_cursor[asid] = RING_VA_BASE
        return asid

    def asid_of(self, name):
        """Return the ASID of the process named ``name``."""
        for asid, known in self.processes.items():
            if known == name:
                return asid
        raise LookupError(f"no process is named {name!r}; the processes are "
                          f"{sorted(self.processes.values())}")

    def _table(self, asid):
        if asid not in self._tables:
            raise ValueError(f"ASID {asid!r} is no process (the ASIDs are "
                             f"{sorted(self.processes)}); create_process first")
        return self._tables[asid]

    # Mapping ------------------------------------------------------------------------------------

    def map(self, asid, va, nbytes, *, local_read=True, remote_write=False, key=0):
        """Give every page of ``va .. va + nbytes - 1`` in ``asid`` a fresh frame with these
        permissions and ``key``; nothing changes if any page is mapped already.

        Raises
        ------
        ValueError
            If the range reaches :data:`RING_VA_BASE`, a page is mapped already, or an argument
            is out of range.
        OutOfFrames
            If physical memory has fewer free frames than pages.
        """
        table = self._table(asid)
        _check_span(va, nbytes, RING_VA_BASE)
        check_range("key", key, 0, (1 << KEY_BITS) - 1)
        vpns = _pages(va, nbytes)
        mapped = [vpn for vpn in vpns if vpn in table]
        if mapped:
            raise ValueError(f"page {mapped[0] << PAGE_BITS:#x} is mapped already in ASID "
                             f"{asid}; unmap it first")
        frames = self._allocate(len(vpns), contiguous=False)
        for vpn, ppn in zip(vpns, frames):
            table[vpn] = Page(ppn, _perm(local_read, remote_write), key)

    def register_window(self, asid, va, nbytes, key):
        """Map a receive window: :meth:`map` with remote write, local read and ``key``."""
        self.map(asid, va, nbytes, local_read=True, remote_write=True, key=key)

    def map_ring(self, asid, entries):
        """Map a completion ring of ``entries`` (a power of two, 1 to 2**15) entries on
        contiguous frames at the next ring VA of ``asid``; return its :class:`Ring`.

        Raises
        ------
        OutOfFrames
            If physical memory has no free contiguous run long enough.
        """
        table = self._table(asid)
        if not (is_int(entries) and 1 <= entries <= 1 << _MAX_RING_LOG2
                and entries & (entries - 1) == 0):
            raise ValueError(f"ring entries {entries!r} must be a power of two, 1 to "
                             f"{1 << _MAX_RING_LOG2}")
        va = self._ring_cursor[asid]
        nbytes = entries * COMPLETION_BYTES
        vpns = _pages(va, nbytes)
        frames = self._allocate(len(vpns), contiguous=True)
        for vpn, ppn in zip(vpns, frames):
            table[vpn] = Page(ppn, _perm(False, False), 0)
        self._ring_cursor[asid] = va + len(vpns) * PAGE_BYTES
        return Ring(va, frames[0] << PAGE_BITS, entries)

    def unmap(self, asid, va, nbytes):
        """Unmap every page of ``va .. va + nbytes - 1`` in ``asid`` and free its frame; return
        the ``os`` port commands that invalidate those pages in the NI TLB, one per page, to be
        sent before the frames are used again. Nothing changes if any page is unmapped.

        Raises
        ------
        LookupError
            If a page of the range is not mapped.
        """
        table = self._table(asid)
        _check_span(va, nbytes, 1 << VA_BITS)
        vpns = _pages(va, nbytes)
        missing = [vpn for vpn in vpns if vpn not in table]
        if missing:
            raise LookupError(f"page {missing[0] << PAGE_BITS:#x} of the range {va:#x} + "
                              f"{nbytes:#x} is not mapped in ASID {asid}; nothing was unmapped")
        for vpn in vpns:
            self._free[table.pop(vpn).ppn] = 1
        return [_tlb_command(TlbOp.INVALIDATE, asid, vpn) for vpn in vpns]

    # Translation --------------------------------------------------------------------------------

    def lookup(self, asid, va):
        """Return (a copy of) the page-table entry (:class:`Page`: ``ppn``, ``perm``, ``key``) of
        the page holding ``va`` in ``asid``, or None if it is not mapped: what a TLB fill is made
        of."""
        table = self._table(asid)
        check_range("va", va, 0, (1 << VA_BITS) - 1)
        page = table.get(va >> PAGE_BITS)
        return None if page is None else page._replace(perm=dict(page.perm))

    def translate(self, asid, va):
        """Return the physical address of ``va`` in ``asid``.

        Raises
        ------
        LookupError
            If the page is not mapped.
        """
        page = self.lookup(asid, va)
        if page is None:
            raise LookupError(f"VA {va:#x} is not mapped in ASID {asid} "
                              f"({self.processes[asid]!r}); map it first")
        return (page.ppn << PAGE_BITS) | (va & (PAGE_BYTES - 1))

    # Helpers ------------------------------------------------------------------------------------

    def _allocate(self, count, *, contiguous):
        """Take ``count`` free frames, lowest first (a run of them if ``contiguous``); return
        their PPNs."""
        if contiguous:
            start = self._free.find(b"\x01" * count)
            if start < 0:
                raise OutOfFrames(f"no {count} contiguous free frames in physical memory "
                                  f"({self.free_frames} free); unmap something or raise "
                                  f"memory_bytes")
            frames = list(range(start, start + count))
        else:
            if self.free_frames < count:
                raise OutOfFrames(f"{count} frames needed, {self.free_frames} free; unmap "
                                  f"something or raise memory_bytes")
            frames = []
            for _ in range(count):
                frames.append(self._free.index(1, frames[-1] + 1 if frames else 0))
        for ppn in frames:
            self._free[ppn] = 0
        return frames


class NiDriver:
    """The OS's driver of its node's NI: endpoints, contexts, TLB fills and fault handling; see
    the module docstring.

    Parameters
    ----------
    port : object
        Takes each command as ``port.command(**fields)`` (module docstring).
    spaces : :class:`AddressSpaces`
        The node's address spaces: rings are allocated in them, fills read from them.
    later : callable
        ``later(delay_cycles, callback)`` calls ``callback(cycle)`` ``delay_cycles`` core cycles
        on, in call order for equal times (:meth:`behavioral.core.SMTCore.after`).
    miss_cycles : int
        Core cycles the OS takes to answer one TLB miss.
    endpoints, contexts : int
        The NI's endpoints (1 to 16) and the core's SMT contexts (1 to 8).

    Attributes
    ----------
    faults : :class:`collections.Counter`
        Every fault taken, by :class:`rtl.layouts.NiFaultKind`.
    log : list of (NiFaultKind, dict)
        The faults other than TLB misses, with their fields, in order.
    counters : dict
        ``fills`` (TLB FILLs sent: for misses and prefills), ``retries`` and ``rejects``
        (MISS_ANSWERs sent).
    """

    def __init__(self, port, spaces, *, later, miss_cycles=1000, endpoints=8, contexts=4):
        if not callable(getattr(port, "command", None)):
            raise TypeError(f"port {port!r} has no command(**fields) method")
        if not isinstance(spaces, AddressSpaces):
            raise TypeError(f"spaces {spaces!r} must be an AddressSpaces")
        if not callable(later):
            raise TypeError(f"later {later!r} must be callable as later(delay_cycles, callback)")
        check_range("miss_cycles", miss_cycles, 0)
        check_range("endpoints", endpoints, 1, 1 << ENDPOINT_BITS)
        check_range("contexts", contexts, 1, MAX_CONTEXTS)
        self.port = port
        self.spaces = spaces
        self.miss_cycles = miss_cycles
        self.endpoints = endpoints
        self.contexts = contexts
        self.faults = Counter()
        self.log = []
        self.counters = dict.fromkeys(["fills", "retries", "rejects"], 0)
        self._later = later
        self._rings = {}                  # open endpoint -> (asid, Ring)
        self._misses = deque()            # faults waiting for the handler, oldest first
        self._handling = False

    def _send(self, fields):
        self.port.command(**fields)

    # Tuning -------------------------------------------------------------------------------------

    def tune(self, tunable, value):
        """Set the NI's ``tunable`` (:class:`rtl.layouts.NiTunable`) to ``value`` (TUNE), for
        its messages from then on. The NI ignores a value above what it was built with.

        Raises
        ------
        ValueError
            If ``tunable`` is no NiTunable or ``value`` is not 1 to 65535.
        """
        if not isinstance(tunable, NiTunable):
            raise ValueError(f"tunable {tunable!r} is no NiTunable; the tunables are "
                             f"{', '.join(member.name for member in NiTunable)}")
        check_range(f"{tunable.name} value", value, 1, 0xFFFF)
        self._send({"op": NiOsOp.TUNE, "index": tunable.value, "value": value})

    # Endpoints ----------------------------------------------------------------------------------

    def open_endpoint(self, index, asid, thread, *, ring_entries=16):
        """Give endpoint ``index`` to process ``asid`` and ``thread`` (the thread BRANCH
        redirects and SPAWN starts as), with a new completion ring of ``ring_entries``; write
        its endpoint table entry (WRITE_ENDPOINT) and return the :class:`Ring`.

        Raises
        ------
        ValueError
            If the endpoint is open already (close it first) or an argument is out of range.
        """
        self._check_endpoint(index)
        if index in self._rings:
            raise ValueError(f"endpoint {index} is open already (ASID {self._rings[index][0]}); "
                             f"close_endpoint first")
        check_range("thread", thread, 0, (1 << THREAD_BITS) - 1)
        ring = self.spaces.map_ring(asid, ring_entries)
        self._rings[index] = (asid, ring)
        self._send({"op": NiOsOp.WRITE_ENDPOINT, "index": index, "endpoint": {
            "enabled": 1, "asid": asid, "thread": thread,
            "ring_log2": ring_entries.bit_length() - 1, "ring_pa": ring.pa, "ring_va": ring.va}})
        return ring

    def close_endpoint(self, index):
        """Disable endpoint ``index`` (WRITE_ENDPOINT of a zero entry), then unmap its ring and
        invalidate the ring's pages in the NI TLB."""
        self._check_endpoint(index)
        if index not in self._rings:
            raise ValueError(f"endpoint {index} is not open; the open endpoints are "
                             f"{sorted(self._rings)}")
        asid, ring = self._rings.pop(index)
        self._send({"op": NiOsOp.WRITE_ENDPOINT, "index": index, "endpoint": {"enabled": 0}})
        self.unmap(asid, ring.va, ring.nbytes)

    def ring(self, index):
        """Return the :class:`Ring` of open endpoint ``index``, or None if it is not open."""
        opened = self._rings.get(index)
        return None if opened is None else opened[1]

    def _check_endpoint(self, index):
        check_range("endpoint", index, 0, self.endpoints - 1)

    # Contexts -----------------------------------------------------------------------------------

    def write_context(self, context, busy, evictable, thread):
        """Write SMT context ``context`` into the Notifier's context table and the lock table's
        residency (WRITE_CONTEXT)."""
        check_range("context", context, 0, self.contexts - 1)
        check_range("thread", thread, 0, (1 << THREAD_BITS) - 1)
        self._send({"op": NiOsOp.WRITE_CONTEXT, "index": context, "context": {
            "busy": int(bool(busy)), "evictable": int(bool(evictable)), "thread": thread}})

    def residency(self, context, resident, thread, evictable):
        """Forward a residency change to the NI: the callback for
        :meth:`behavioral.os.OS.on_residency`."""
        self.write_context(context, resident, evictable, thread)

    # Translations -------------------------------------------------------------------------------

    def prefill(self, asid, va, nbytes):
        """Send a TLB FILL for every page of ``va .. va + nbytes - 1`` in ``asid`` at once, so
        that the NI does not miss on them.

        Raises
        ------
        LookupError
            If a page is not mapped (nothing is sent).
        """
        _check_span(va, nbytes, 1 << VA_BITS)
        vpns = _pages(va, nbytes)
        pages = [self.spaces.lookup(asid, vpn << PAGE_BITS) for vpn in vpns]
        if None in pages:
            vpn = vpns[pages.index(None)]
            raise LookupError(f"page {vpn << PAGE_BITS:#x} is not mapped in ASID {asid}; map it "
                              f"before prefill")
        for vpn, page in zip(vpns, pages):
            self._fill(asid, vpn, page)

    def unmap(self, asid, va, nbytes):
        """Unmap ``va .. va + nbytes - 1`` in ``asid`` (:meth:`AddressSpaces.unmap`) and send the
        NI TLB invalidations."""
        for command in self.spaces.unmap(asid, va, nbytes):
            self._send(command)

    def _fill(self, asid, vpn, page):
        self.counters["fills"] += 1
        self._send(_tlb_command(TlbOp.FILL, asid, vpn, page))

    # Faults -------------------------------------------------------------------------------------

    def fault(self, fields):
        """Take one fault from the NI's ``fault`` port (a dict of :data:`rtl.layouts.NiFault`
        fields): count it; a TLB miss is answered ``miss_cycles`` after the misses before it;
        any other kind is logged."""
        try:
            kind = NiFaultKind(fields["kind"])
        except ValueError:
            raise ValueError(f"fault kind {fields['kind']!r} is no NiFaultKind") from None
        self.faults[kind] += 1
        if kind not in _MISSES:
            self.log.append((kind, dict(fields)))
            return
        self._misses.append(dict(fields, kind=kind))
        if not self._handling:
            self._handling = True
            self._later(self.miss_cycles, self._answer_miss)

    def _answer_miss(self, cycle):
        """Answer the oldest miss from the page table as it is now; start on the next one."""
        miss = self._misses.popleft()
        asid, va = miss["asid"], miss["va"]
        page = self.spaces.lookup(asid, va) if asid in self.spaces.processes else None
        if page is not None:
            self._fill(asid, va >> PAGE_BITS, page)
        self.counters["rejects" if page is None else "retries"] += 1
        self._send({"op": NiOsOp.MISS_ANSWER, "engine": _MISSES[miss["kind"]],
                    "reject": int(page is None)})
        if self._misses:
            self._later(self.miss_cycles, self._answer_miss)
        else:
            self._handling = False
