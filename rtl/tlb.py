from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (PAGE_BITS, PPN_BITS, TlbOp, TlbResponse, TlbStatus, tlb_command_layout,
                      tlb_entry_layout, tlb_lookup_layout)
from .params import check_int

__all__ = ["NITLB"]

# The low VPN bits, compared apart from the tag (valid, ASID, the rest of the VPN): 16 bit pairs,
# three LUT4 levels, and the tag with the access checks no deeper.
_LOW_VPN_BITS = 32


class _LookupPipeline:
    """The registers of one lookup port and what is decoded from them, kept on the component so
    that a proof can name them."""

    def __init__(self, name, entries):
        self.name = name
        # Stage 1, the compare in two halves (see NITLB._maps_halves): the entries whose low VPN
        # bits are the page's, those whose tag is the request's, those of them that permit the
        # access, and those that also hold the key; and the entries written since the compare.
        self.s1_valid = Signal(name=f"{name}_s1_valid")
        self.s1_low = Signal(entries, name=f"{name}_s1_low")
        self.s1_tag = Signal(entries, name=f"{name}_s1_tag")
        self.s1_tag_permitted = Signal(entries, name=f"{name}_s1_tag_permitted")
        self.s1_tag_granted = Signal(entries, name=f"{name}_s1_tag_granted")
        self.s1_written = Signal(entries, name=f"{name}_s1_written")
        # Their ANDs, decoded by the output stage: the entries that map the page, those of them
        # that permit the access, and those that also hold the key (the HIT).
        self.s1_match = Signal(entries, name=f"{name}_s1_match")
        self.s1_permitted = Signal(entries, name=f"{name}_s1_permitted")
        self.s1_granted = Signal(entries, name=f"{name}_s1_granted")
        # Output: whether any entry matched, permitted and granted (the answer as decided,
        # decoded to ``out_status`` beside the response), the PPN, the entry it came from, and
        # whether that entry has been written since the compare (then the answer is MISS).
        self.out_matched = Signal(name=f"{name}_out_matched")
        self.out_permitted = Signal(name=f"{name}_out_permitted")
        self.out_granted = Signal(name=f"{name}_out_granted")
        self.out_status = Signal(TlbStatus, name=f"{name}_out_status")
        self.out_ppn = Signal(PPN_BITS, name=f"{name}_out_ppn")
        self.out_entry = Signal(entries, name=f"{name}_out_entry")
        self.out_stale = Signal(name=f"{name}_out_stale")


class NITLB(wiring.Component):
    """NI TLB: fully associative, ASID-tagged translation with permission and key checks.

    Two lookup ports, TX (the send engine: the sender's ASID and a VA it wants to read, needs
    ``local_read``) and RX (the receive engine: the endpoint's ASID, the remote VA and the
    message's key, needs ``remote_write`` and the entry's key), each a request stream and a
    response stream (:data:`rtl.layouts.TlbResponse`). Every request gets exactly one response,
    in order: :attr:`TlbStatus.HIT` with the PPN, :attr:`TlbStatus.MISS`, or a fault
    (:attr:`TlbStatus.PERMISSION_FAULT` is checked before :attr:`TlbStatus.KEY_FAULT`).

    Timing: a port takes one request per cycle; its response is valid two cycles after the cycle
    of the request's transfer (the compare registered in two halves per entry, then the response
    registered, but for one LUT level that applies the staleness and decodes the status). The
    request payload feeds the comparators directly, so the requester should drive it from a
    register. A response not taken stalls its port; the other port is unaffected.

    Management (the ``mgmt`` stream, :data:`rtl.layouts.tlb_command_layout`): FILL, INVALIDATE
    (asid, vpn), INVALIDATE_ASID and INVALIDATE_ALL. A command is taken every third cycle at most
    (compare, decide, write) and completes :attr:`MGMT_LATENCY` clock edges after its transfer:
    lookups whose request is taken after that see it. A lookup in flight whose entry is written
    (filled or invalidated) after its compare and before its response is taken answers MISS, so
    once an invalidation has completed no response, not even one already waiting, hits the
    removed translation.

    FILL of a page the ASID already maps rewrites that entry, so no two valid entries ever map
    the same (asid, vpn). Otherwise FILL takes the lowest-numbered free entry; when every entry
    is valid it replaces entries in round-robin order (a victim pointer that advances by one at
    each replacement, so the oldest-replaced entry goes first).

    Parameters
    ----------
    entries : int
        Number of entries, 2 to 64.
    asid_bits : int
        ASID width, 1 to 16.

    Members
    -------
    tx_request : In(stream.Signature(tlb_lookup_layout(asid_bits)))
    tx_response : Out(stream.Signature(TlbResponse))
    rx_request : In(stream.Signature(tlb_lookup_layout(asid_bits)))
    rx_response : Out(stream.Signature(TlbResponse))
    mgmt : In(stream.Signature(tlb_command_layout(asid_bits)))
    """

    #: Clock edges from a management command's transfer to the edge at which the table changes.
    MGMT_LATENCY = 3

    def __init__(self, *, entries=32, asid_bits=8):
        self._entries = check_int(self, "entries", entries, 2, 64)
        self._asid_bits = check_int(self, "asid_bits", asid_bits, 1, 16)
        lookup = stream.Signature(tlb_lookup_layout(asid_bits))
        response = stream.Signature(TlbResponse)
        super().__init__({
            "tx_request": In(lookup),
            "tx_response": Out(response),
            "rx_request": In(lookup),
            "rx_response": Out(response),
            "mgmt": In(stream.Signature(tlb_command_layout(asid_bits))),
        })
        self.table = [Signal(tlb_entry_layout(asid_bits), name=f"entry{i}")
                      for i in range(entries)]
        #: Entries written (filled or cleared) at the coming clock edge.
        self.write_mask = Signal(entries)
        self.tx = _LookupPipeline("tx", entries)
        self.rx = _LookupPipeline("rx", entries)

    @property
    def entries(self):
        return self._entries

    @property
    def asid_bits(self):
        return self._asid_bits

    def elaborate(self, platform):
        m = Module()
        self._management(m)
        self._lookup(m, self.tx, self.tx_request, self.tx_response, remote=False)
        self._lookup(m, self.rx, self.rx_request, self.rx_response, remote=True)
        return m

    @staticmethod
    def _maps_halves(entry, asid, vpn):
        """Return the two terms whose AND says whether ``entry`` is the valid translation of page
        ``vpn`` of ``asid``: the tag (valid, ASID, top VPN bits) and the low VPN bits."""
        low = _LOW_VPN_BITS
        return (entry.valid & (entry.asid == asid) & (entry.vpn[low:] == vpn[low:]),
                entry.vpn[:low] == vpn[:low])

    def _management(self, m):
        entries, table = self._entries, self.table
        command = Signal(tlb_command_layout(self._asid_bits))
        command_valid = Signal()
        decoded = Signal(tlb_command_layout(self._asid_bits))
        decoded_valid = Signal()
        same_page_tag = Signal(entries)
        same_page_low = Signal(entries)
        same_asid = Signal(entries)
        lowest_free = Signal(entries)
        new_entry = Signal(tlb_entry_layout(self._asid_bits))
        victim = Signal(range(entries))

        # Take a command once the previous one has been decoded: its writes then land before the
        # next command compares against the table.
        m.d.comb += self.mgmt.ready.eq(~command_valid & ~decoded_valid)
        m.d.sync += command_valid.eq(self.mgmt.valid & self.mgmt.ready)
        with m.If(self.mgmt.ready):
            m.d.sync += command.eq(self.mgmt.payload)

        # Compare: which entries the command names, and which free entry is the lowest. As for
        # a lookup (see _lookup), the page compare is registered in halves, in a module of its
        # own: the command register fans out to every entry like a request.
        compare = m.submodules.mgmt_compare = Module()
        halves = [self._maps_halves(entry, command.asid, command.vpn) for entry in table]
        page_tag = Signal(entries)
        page_low = Signal(entries)
        compare.d.comb += [
            page_tag.eq(Cat(tag for tag, _ in halves)),
            page_low.eq(Cat(low for _, low in halves)),
        ]
        free = Cat(~entry.valid for entry in table)
        m.d.sync += [
            decoded_valid.eq(command_valid),
            decoded.eq(command),
            same_page_tag.eq(page_tag),
            same_page_low.eq(page_low),
            same_asid.eq(Cat(entry.valid & (entry.asid == command.asid) for entry in table)),
            lowest_free.eq(free & (~free + 1)),
        ]

        # Decide the writes: a fill rewrites the page's entry, else takes the lowest free entry,
        # else the victim's.
        same_page = same_page_tag & same_page_low
        fill_target = Signal(entries)
        with m.If(same_page.any()):
            m.d.comb += fill_target.eq(same_page)
        with m.Elif(lowest_free.any()):
            m.d.comb += fill_target.eq(lowest_free)
        with m.Else():
            m.d.comb += fill_target.eq(1 << victim)
        with m.If(decoded_valid):
            with m.Switch(decoded.op):
                with m.Case(TlbOp.FILL):
                    m.d.sync += self.write_mask.eq(fill_target)
                with m.Case(TlbOp.INVALIDATE):
                    m.d.sync += self.write_mask.eq(same_page)
                with m.Case(TlbOp.INVALIDATE_ASID):
                    m.d.sync += self.write_mask.eq(same_asid)
                with m.Case(TlbOp.INVALIDATE_ALL):
                    m.d.sync += self.write_mask.eq(Const(-1, entries))
            m.d.sync += [
                new_entry.valid.eq(decoded.op == TlbOp.FILL),
                new_entry.asid.eq(decoded.asid),
                new_entry.vpn.eq(decoded.vpn),
                new_entry.ppn.eq(decoded.ppn),
                new_entry.perm.eq(decoded.perm),
                new_entry.key.eq(decoded.key),
            ]
        with m.Else():
            m.d.sync += self.write_mask.eq(0)
        replacing = (decoded_valid & (decoded.op == TlbOp.FILL) & ~same_page.any()
                     & ~lowest_free.any())
        with m.If(replacing):
            m.d.sync += victim.eq(Mux(victim == entries - 1, 0, victim + 1))

        # Write the table.
        for index, entry in enumerate(table):
            with m.If(self.write_mask[index]):
                m.d.sync += entry.eq(new_entry)

    def _lookup(self, m, pipe, request, response, *, remote):
        table = self.table
        advance = Signal()

        # The whole port moves when its response register is free or being taken. An answer
        # from an entry written since the compare is MISS: the write is tracked beside the
        # pipeline instead of through it, which keeps it off the compare and decide paths.
        m.d.comb += [
            advance.eq(~response.valid | response.ready),
            request.ready.eq(advance),
            response.payload.status.eq(Mux(pipe.out_stale, TlbStatus.MISS, pipe.out_status)),
            response.payload.ppn.eq(Mux(pipe.out_stale, 0, pipe.out_ppn)),
        ]
        # The status, from the three flags the output stage registers (see below): with the
        # staleness, four inputs per bit, the one LUT level the response had anyway.
        with m.If(~pipe.out_matched):
            m.d.comb += pipe.out_status.eq(TlbStatus.MISS)
        with m.Elif(~pipe.out_permitted):
            m.d.comb += pipe.out_status.eq(TlbStatus.PERMISSION_FAULT)
        with m.Elif(~pipe.out_granted):
            m.d.comb += pipe.out_status.eq(TlbStatus.KEY_FAULT)
        with m.Else():
            m.d.comb += pipe.out_status.eq(TlbStatus.HIT)

        # Stage 1: compare the request against every entry. The halves of the compare are
        # registered apart, each a LUT level shallower than the whole; the access checks ride on
        # the tag half, and the output stage ANDs the halves in its first LUT level. The compare
        # is a module of its own, as are the output stage's parts: ABC maps each module's logic
        # for the depth of that module's deepest path and trades the slack of shallower paths
        # for LUTs, so in the TLB's module these cones (whose inputs cross the table on the
        # longest wires) would be deepened to the depth of the management's decode.
        compare = m.submodules[f"{pipe.name}_compare"] = Module()
        vpn = request.payload.va[PAGE_BITS:]
        halves = [self._maps_halves(entry, request.payload.asid, vpn) for entry in table]
        low = Signal(len(table))
        tag = Signal(len(table))
        if remote:
            permitted = Cat(entry.perm.remote_write for entry in table)
            key_ok = Cat(entry.key == request.payload.key for entry in table)
        else:
            permitted = Cat(entry.perm.local_read for entry in table)
            key_ok = Const(-1, len(table))
        tag_permitted = Signal(len(table))
        tag_granted = Signal(len(table))
        compare.d.comb += [
            low.eq(Cat(low for _, low in halves)),
            tag.eq(Cat(tag for tag, _ in halves)),
            tag_permitted.eq(tag & permitted),
            tag_granted.eq(tag & permitted & key_ok),
        ]
        with m.If(advance):
            m.d.sync += [
                pipe.s1_valid.eq(request.valid),
                pipe.s1_low.eq(low),
                pipe.s1_tag.eq(tag),
                pipe.s1_tag_permitted.eq(tag_permitted),
                pipe.s1_tag_granted.eq(tag_granted),
                pipe.s1_written.eq(self.write_mask),
            ]
        with m.Else():
            m.d.sync += pipe.s1_written.eq(pipe.s1_written | self.write_mask)

        # Output: decide the answer of the (single) matching entry. The stage registers only
        # whether any entry matched, permitted and granted, a LUT level less than the status.
        decide = m.submodules[f"{pipe.name}_decide"] = Module()
        decide.d.comb += [
            pipe.s1_match.eq(pipe.s1_low & pipe.s1_tag),
            pipe.s1_permitted.eq(pipe.s1_low & pipe.s1_tag_permitted),
            pipe.s1_granted.eq(pipe.s1_low & pipe.s1_tag_granted),
        ]
        any_match, any_permitted, any_granted = Signal(), Signal(), Signal()
        decide.d.comb += [
            any_match.eq(pipe.s1_match.any()),
            any_permitted.eq(pipe.s1_permitted.any()),
            any_granted.eq(pipe.s1_granted.any()),
        ]
        granted_ppn = 0
        for index, entry in enumerate(table):
            granted_ppn = granted_ppn | Mux(pipe.s1_granted[index], entry.ppn, 0)
        # The PPN mux apart from the decide, which then makes each entry's select once: inside
        # it, ABC would fold the AND of the halves into every PPN bit (a thousand LUTs more).
        ppn = Signal(PPN_BITS)
        ppn_mux = m.submodules[f"{pipe.name}_ppn"] = Module()
        ppn_mux.d.comb += ppn.eq(granted_ppn)
        with m.If(advance):
            m.d.sync += [
                response.valid.eq(pipe.s1_valid),
                pipe.out_matched.eq(any_match),
                pipe.out_permitted.eq(any_permitted),
                pipe.out_granted.eq(any_granted),
                pipe.out_ppn.eq(ppn),
                pipe.out_entry.eq(pipe.s1_match),
            ]

        # Whether the answer's entry has been written since the compare: a module of its own,
        # so that its OR of every entry is mapped as a tree (inside the decide it was mapped as
        # a chain), and it ANDs the halves itself, in the LUT that takes the entry's writes.
        track = m.submodules[f"{pipe.name}_stale"] = Module()
        stale = Signal()
        written = pipe.s1_low & pipe.s1_tag & (pipe.s1_written | self.write_mask)
        track.d.comb += stale.eq(Mux(advance, written.any(),
                                     pipe.out_stale | (pipe.out_entry & self.write_mask).any()))
        m.d.sync += pipe.out_stale.eq(stale)
