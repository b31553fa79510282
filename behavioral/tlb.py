"""Functional reference model of the NI TLB (:class:`rtl.tlb.NITLB`).

The model keeps the table entry by entry with the hardware's replacement policy, so it predicts
which translation a fill evicts. It has no notion of cycles: a testbench applies each management
command when the hardware completes it and asks :meth:`TLBModel.lookup` what a request sees at the
moment it compares. It also serves the OS model as its view of the NI TLB.
"""

from dataclasses import dataclass

from rtl.layouts import ASID_BITS, PAGE_BITS, PPN_BITS, VPN_BITS, TlbOp, TlbStatus

__all__ = ["TlbEntry", "TlbAnswer", "TLBModel"]


@dataclass(frozen=True)
class TlbEntry:
    asid: int
    vpn: int
    ppn: int
    local_read: bool
    remote_write: bool
    key: int


@dataclass(frozen=True)
class TlbAnswer:
    """A lookup's outcome; ``index`` is the entry that mapped the page (None on MISS)."""
    status: TlbStatus
    ppn: int = 0
    index: int | None = None


class TLBModel:
    """The NI TLB's table and policies.

    Parameters
    ----------
    entries : int
        Number of entries.
    asid_bits : int
        ASID width.
    """

    def __init__(self, entries=32, asid_bits=ASID_BITS):
        self.entries = entries
        self.asid_bits = asid_bits
        self.table = [None] * entries
        self.victim = 0

    def _check(self, asid, vpn=0, ppn=0, key=0):
        for name, value, bits in (("asid", asid, self.asid_bits), ("vpn", vpn, VPN_BITS),
                                  ("ppn", ppn, PPN_BITS), ("key", key, 16)):
            if not 0 <= value < (1 << bits):
                raise ValueError(f"{name} {value:#x} does not fit in {bits} bits")

    def fill(self, asid, vpn, ppn, *, local_read=False, remote_write=False, key=0):
        """Map (asid, vpn) to ppn; return the index written.

        An entry already mapping the page is rewritten; otherwise the lowest free entry is taken;
        when none is free, the victim pointer's entry is replaced and the pointer advances.
        """
        self._check(asid, vpn, ppn, key)
        entry = TlbEntry(asid, vpn, ppn, bool(local_read), bool(remote_write), key)
        index = self._find(asid, vpn)
        if index is None and None in self.table:
            index = self.table.index(None)
        if index is None:
            index = self.victim
            self.victim = (self.victim + 1) % self.entries
        self.table[index] = entry
        return index

    def invalidate(self, asid, vpn):
        """Remove the entry of (asid, vpn); return the indices cleared."""
        self._check(asid, vpn)
        return self._clear(lambda e: e.asid == asid and e.vpn == vpn)

    def invalidate_asid(self, asid):
        """Remove every entry of ``asid``; return the indices cleared."""
        self._check(asid)
        return self._clear(lambda e: e.asid == asid)

    def invalidate_all(self):
        """Remove every entry; return the indices the hardware writes (all of them)."""
        self.table = [None] * self.entries
        return list(range(self.entries))

    def execute(self, op, *, asid=0, vpn=0, ppn=0, perm=None, key=0):
        """Apply a management command as laid out in :func:`rtl.layouts.tlb_command_layout`;
        return the indices the hardware writes."""
        perm = perm or {}
        if op == TlbOp.FILL:
            return [self.fill(asid, vpn, ppn, local_read=perm.get("local_read", 0),
                              remote_write=perm.get("remote_write", 0), key=key)]
        if op == TlbOp.INVALIDATE:
            return self.invalidate(asid, vpn)
        if op == TlbOp.INVALIDATE_ASID:
            return self.invalidate_asid(asid)
        return self.invalidate_all()

    def lookup(self, asid, va, *, remote, key=0):
        """Return the :class:`TlbAnswer` for a TX (``remote=False``: needs local read) or RX
        (``remote=True``: needs remote write and the window's key) lookup."""
        index = self._find(asid, va >> PAGE_BITS)
        if index is None:
            return TlbAnswer(TlbStatus.MISS)
        entry = self.table[index]
        if not (entry.remote_write if remote else entry.local_read):
            return TlbAnswer(TlbStatus.PERMISSION_FAULT, index=index)
        if remote and entry.key != key:
            return TlbAnswer(TlbStatus.KEY_FAULT, index=index)
        return TlbAnswer(TlbStatus.HIT, entry.ppn, index)

    def _find(self, asid, vpn):
        for index, entry in enumerate(self.table):
            if entry is not None and entry.asid == asid and entry.vpn == vpn:
                return index
        return None

    def _clear(self, predicate):
        cleared = [i for i, e in enumerate(self.table) if e is not None and predicate(e)]
        for index in cleared:
            self.table[index] = None
        return cleared
