from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .arbiter import RoundRobinArbiter
from .layouts import MAX_NODES, NODE_BITS, Flit, MessageHeader
from .params import check_int, silence_unused

__all__ = ["Fabric", "check_max_cycles_per_flit"]


def check_max_cycles_per_flit(owner, value, cycles_per_flit):
    """Return ``value`` as ``owner``'s ``max_cycles_per_flit``: 0, or from ``cycles_per_flit``
    (and 2) up to 256; raise :exc:`ValueError` naming it otherwise."""
    value = check_int(owner, "max_cycles_per_flit", value, 0, 256)
    if value and value < max(2, cycles_per_flit):
        silence_unused(owner)
        raise ValueError(f"max_cycles_per_flit {value} must be 0 (a fixed rate) or from "
                         f"{max(2, cycles_per_flit)} (above 1, and at least cycles_per_flit "
                         f"{cycles_per_flit}) to 256")
    return value


class Fabric(wiring.Component):
    """N-port message crossbar with wormhole switching.

    Each input carries messages as flits (:data:`rtl.layouts.Flit`), ``last`` marking a message's
    final flit. The first flit of a message holds the :data:`rtl.layouts.MessageHeader`
    ``dst_node`` field, which selects the output. Each output has its own round-robin arbiter over
    the inputs whose message head waits for it; once granted, an input owns the output until its
    ``last`` flit has passed, so a message's flits leave contiguously and messages from one input
    to one output leave in the order they arrived. The pointer of an output's arbiter moves past
    each granted input, so under full contention every waiting input is served within ``nodes``
    messages.

    The path from an input to an output is one register (the switch) followed by the link: an
    optional rate limiter that lets a flit leave every ``cycles_per_flit`` cycles (or every
    ``link_cycles_per_flit[o]`` cycles, set at run time) and
    ``link_latency`` pipeline stages. Without contention an input-to-output transfer takes
    ``1 + link_latency`` cycles and every port sustains one flit per cycle (with
    ``cycles_per_flit=1``). Every stage honours valid/ready backpressure without bubbles.

    A message whose ``dst_node`` is not below ``nodes`` is consumed at full rate and dropped whole:
    it is never routed, never stalls other traffic, and is counted on ``dropped``.

    Parameters
    ----------
    nodes : int
        Number of ports, 2 to 16.
    link_latency : int
        Pipeline stages on each output link, 0 to 16 (DESIGN default 2).
    cycles_per_flit : int
        Link rate limiter: at most one flit per this many cycles on each output, 1 to 256.
    max_cycles_per_flit : int
        With a value above ``cycles_per_flit``, 2 to 256: each output's rate is set at run time
        (``link_cycles_per_flit``), 1 to this, ``cycles_per_flit`` after reset. 0 (default):
        the rate is ``cycles_per_flit``, fixed.

    Members
    -------
    inputs : In(stream.Signature(Flit)).array(nodes)
        Flits from node ``i`` into the fabric.
    outputs : Out(stream.Signature(Flit)).array(nodes)
        Flits from the fabric to node ``o``.
    dropped : Out(32)
        Messages dropped for an unknown destination node since reset (wraps); a drop is counted
        two cycles after its last flit's transfer.
    link_cycles_per_flit : In(range(1, max_cycles_per_flit + 1)).array(nodes)
        With ``max_cycles_per_flit`` only: output ``o`` lets a flit leave at most every
        ``link_cycles_per_flit[o]`` cycles (the gap after a flit is the value at the flit's
        transfer; a gap under way runs out as it began).
    """

    def __init__(self, *, nodes=2, link_latency=2, cycles_per_flit=1, max_cycles_per_flit=0):
        self._nodes = check_int(self, "nodes", nodes, 2, MAX_NODES)
        self._link_latency = check_int(self, "link_latency", link_latency, 0, 16)
        self._cycles_per_flit = check_int(self, "cycles_per_flit", cycles_per_flit, 1, 256)
        self._max_cycles_per_flit = check_max_cycles_per_flit(self, max_cycles_per_flit,
                                                              cycles_per_flit)
        rate = ({"link_cycles_per_flit": In(range(1, self._max_cycles_per_flit + 1),
                                            init=cycles_per_flit).array(nodes)}
                if self._max_cycles_per_flit else {})
        super().__init__({
            "inputs": In(stream.Signature(Flit)).array(nodes),
            "outputs": Out(stream.Signature(Flit)).array(nodes),
            "dropped": Out(32),
            **rate,
        })

    @property
    def nodes(self):
        return self._nodes

    @property
    def link_latency(self):
        return self._link_latency

    @property
    def cycles_per_flit(self):
        return self._cycles_per_flit

    @property
    def max_cycles_per_flit(self):
        return self._max_cycles_per_flit

    def elaborate(self, platform):
        m = Module()
        nodes = self._nodes

        # Submodules: one arbiter per output.
        arbiters = []
        for output in range(nodes):
            arbiter = RoundRobinArbiter(count=nodes)
            m.submodules[f"arbiter{output}"] = arbiter
            arbiters.append(arbiter)

        # Inputs: where each input's current flit goes, and whether it belongs to a dropped message.
        route = MessageHeader["dst_node"]
        dest = [Signal(NODE_BITS, name=f"in{i}_dest") for i in range(nodes)]
        drop = [Signal(name=f"in{i}_drop") for i in range(nodes)]
        mid = [Signal(name=f"in{i}_mid_message") for i in range(nodes)]
        mid_drop = [Signal(name=f"in{i}_mid_drop") for i in range(nodes)]
        for i, port in enumerate(self.inputs):
            head_dest = port.payload.data[route.offset:route.offset + NODE_BITS]
            # Only a message's first flit asks for an output (``~mid`` in the requests below):
            # the rest follow the owner the output keeps.
            m.d.comb += dest[i].eq(head_dest)
            if nodes < MAX_NODES:
                m.d.comb += drop[i].eq(Mux(mid[i], mid_drop[i], head_dest >= nodes))
            else:
                m.d.comb += drop[i].eq(mid[i] & mid_drop[i])

        # Switch: per output, the arbiter picks a waiting head; the winner keeps the output until
        # its last flit has passed.
        links = []
        served = [[] for _ in range(nodes)]
        for output, arbiter in enumerate(arbiters):
            locked = Signal(name=f"out{output}_locked")
            owner = Signal(range(nodes), name=f"out{output}_owner")
            select = Signal(range(nodes), name=f"out{output}_select")
            link = stream.Signature(Flit).create(path=(f"out{output}_switch",))
            transfer = Signal(name=f"out{output}_transfer")
            accept = self._link_accept(m, output, link, transfer)
            valid = Signal(name=f"out{output}_valid")
            payload = Signal(Flit, name=f"out{output}_payload")
            with m.Switch(select):
                for i, port in enumerate(self.inputs):
                    # The last input takes the unused select values too, so the mux is complete.
                    with (m.Case(i) if i < nodes - 1 else m.Default()):
                        m.d.comb += [valid.eq(port.valid), payload.eq(port.payload)]
            m.d.comb += [
                arbiter.requests.eq(Cat(port.valid & ~mid[i] & ~drop[i] & (dest[i] == output)
                                        for i, port in enumerate(self.inputs))),
                select.eq(Mux(locked, owner, arbiter.grant)),
                transfer.eq((locked | arbiter.valid) & valid & accept),
                arbiter.advance.eq(transfer & ~locked),
            ]
            with m.If(transfer):
                m.d.sync += [
                    locked.eq(~payload.last),
                    owner.eq(select),
                ]
            self._switch_register(m, link, transfer, payload)
            for i in range(nodes):
                served[i].append(accept & (locked | arbiter.valid) & (select == i))
            links.append(link)

        # Inputs: a flit moves when its output takes it, or at once when it is being dropped.
        dropped_now = []
        for i, port in enumerate(self.inputs):
            m.d.comb += port.ready.eq(drop[i] | Cat(served[i]).any())
            with m.If(port.valid & port.ready):
                m.d.sync += [
                    mid[i].eq(~port.payload.last),
                    mid_drop[i].eq(drop[i]),
                ]
            dropped_now.append(port.valid & port.ready & port.payload.last & drop[i])
        # Count a cycle later, so that the counter's carry chain is not on the routing path.
        dropped_last_cycle = Signal(nodes)
        m.d.sync += [
            dropped_last_cycle.eq(Cat(dropped_now)),
            self.dropped.eq(self.dropped + sum(dropped_last_cycle)),
        ]

        # Links: rate limiter at the switch register, then the latency stages.
        for output, link in enumerate(links):
            upstream = link
            for stage in range(self._link_latency):
                upstream = self._pipeline_stage(m, upstream, f"out{output}_stage{stage}")
            wiring.connect(m, upstream, wiring.flipped(self.outputs[output]))
        return m

    def _link_accept(self, m, output, link, transfer):
        """Return the signal that says the switch register of ``output`` can take a flit."""
        accept = Signal(name=f"out{output}_accept")
        room = ~link.valid | link.ready
        most = self._max_cycles_per_flit or self._cycles_per_flit
        if most == 1:
            m.d.comb += accept.eq(room)
        else:
            # A flit leaves the switch at most every cycles_per_flit cycles (as set at run time,
            # with max_cycles_per_flit).
            rate = (self.link_cycles_per_flit[output] if self._max_cycles_per_flit
                    else self._cycles_per_flit)
            gap = Signal(range(most), name=f"out{output}_gap")
            m.d.comb += accept.eq(room & (gap == 0))
            with m.If(transfer):
                m.d.sync += gap.eq(rate - 1)
            with m.Elif(gap != 0):
                m.d.sync += gap.eq(gap - 1)
        return accept

    @staticmethod
    def _switch_register(m, link, transfer, payload):
        with m.If(link.ready):
            m.d.sync += link.valid.eq(0)
        with m.If(transfer):
            m.d.sync += [
                link.valid.eq(1),
                link.payload.eq(payload),
            ]

    @staticmethod
    def _pipeline_stage(m, upstream, name):
        """Register ``upstream`` once; full throughput, ready passes combinationally."""
        stage = stream.Signature(Flit).create(path=(name,))
        m.d.comb += upstream.ready.eq(~stage.valid | stage.ready)
        with m.If(upstream.ready):
            m.d.sync += [
                stage.valid.eq(upstream.valid),
                stage.payload.eq(upstream.payload),
            ]
        return stage
