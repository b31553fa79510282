"""Proof harness of the Fabric's delivery (:class:`rtl.fabric.Fabric`): nothing lost, duplicated
or misrouted, nothing made up.

:class:`FabricProof` wraps a small Fabric (3 nodes, one link stage) whose every input is free:
any flits on every input, any backpressure on every output, every cycle. The solver chooses a
flit value W (``AnyConst``); the environment transfers W into the Fabric at most once, at any
input, at any time (every other flit differs from it, and W stands for any flit, whatever the
others). The harness reads each input's messages by the rules (a message's first flit names its
destination in ``dst_node``, its ``last`` flit ends it) to know W's destination, and sees where
W is inside the Fabric: each output's path is its switch register and its link stages.

Properties:

* ``nothing-out-that-was-not-put-in``: W leaves the Fabric only after it went in, and only once;
* ``delivered-at-its-destination``: W leaves at the output of its message's destination;
* ``held-once-until-delivered``: from the edge W goes in to the edge it leaves, exactly one
  register of its destination's path holds it, and no register of another path; before and
  after, none. (A message to a node not in the system is dropped: W is then never held.)

The first two are what a user of the Fabric sees; the third makes "not lost" a safety property
(W cannot vanish without a register still holding it). The harness cannot name the Fabric's own
per-input message state, which induction would need tied to its own, so the proof is a bounded
model check from reset, deep enough for several short messages to meet at an output.
"""

from amaranth import *
from amaranth.hdl import Assume
from amaranth.hdl._ast import AnyConst
from amaranth.lib import wiring

from rtl.fabric import Fabric
from rtl.layouts import FLIT_DATA_BITS, NODE_BITS, Flit, MessageHeader

from .formal_sby import Properties, add_elaborated, drive_freely, observed

__all__ = ["FabricProof", "FabricDropsUnderBackpressure", "FABRIC_PARAMS"]

#: The Fabric the proof is about: three nodes, so that two inputs contend for an output while a
#: third is busy; one link stage.
FABRIC_PARAMS = dict(nodes=3, link_latency=1)


class FabricDropsUnderBackpressure(Fabric):
    """A deliberately broken Fabric whose link stages take a flit even when full, losing the one
    they hold."""

    @staticmethod
    def _pipeline_stage(m, upstream, name):
        stage = Fabric._pipeline_stage(m, upstream, name)
        m.d.comb += upstream.ready.eq(1)
        return stage


class _PathObserver:
    """Keeps each output's registers, switch register first (``paths[output]``)."""

    def elaborate(self, platform):
        self.paths = {}
        return super().elaborate(platform)

    def _link_accept(self, m, output, link, transfer):
        self.paths[output] = [link]
        return super()._link_accept(m, output, link, transfer)

    def _pipeline_stage(self, m, upstream, name):
        stage = super()._pipeline_stage(m, upstream, name)
        for path in self.paths.values():
            if path[-1] is upstream:
                path.append(stage)
        return stage


class FabricProof(wiring.Component):
    """Proof harness around a Fabric of ``fabric_class`` (:class:`~rtl.fabric.Fabric` or a
    variant) with :data:`FABRIC_PARAMS`."""

    def __init__(self, fabric_class=Fabric):
        self._fabric = observed(fabric_class, _PathObserver)(**FABRIC_PARAMS)
        self.properties = Properties()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        check = self.properties.check
        fabric = self._fabric
        add_elaborated(m, "fabric", fabric, platform)
        drive_freely(m, fabric)
        m.d.comb += Assume(~ResetSignal())

        watched = Signal(Flit)
        m.d.comb += watched.eq(AnyConst(Flit.size))
        injected = Signal()     # W has gone in (at the edge of its transfer)
        delivered = Signal()    # W has come out
        destination = Signal(NODE_BITS)

        # Each input's messages, and W going in (once).
        going_in = []
        for number, port in enumerate(fabric.inputs):
            mid = Signal(name=f"in{number}_mid")
            mid_destination = Signal(NODE_BITS, name=f"in{number}_destination")
            head = MessageHeader(Cat(port.payload.data,
                                     C(0, MessageHeader.size - FLIT_DATA_BITS)))
            flit_destination = Mux(mid, mid_destination, head.dst_node)
            taken = port.valid & port.ready
            with m.If(taken):
                m.d.sync += [mid.eq(~port.payload.last), mid_destination.eq(flit_destination)]
            now = Signal(name=f"in{number}_watched")
            m.d.comb += [
                now.eq(taken & (port.payload.as_value() == watched.as_value())),
                Assume(~now | ~(injected | Cat(going_in).any())),
            ]
            with m.If(now):
                m.d.sync += [injected.eq(1), destination.eq(flit_destination)]
            going_in.append(now)

        # Where W is, and W coming out.
        in_flight = Signal()
        m.d.comb += in_flight.eq(injected & ~delivered & (destination < fabric.nodes))
        coming_out = []
        for output, port in enumerate(fabric.outputs):
            now = Signal(name=f"out{output}_watched")
            m.d.comb += now.eq(port.valid & port.ready
                               & (port.payload.as_value() == watched.as_value()))
            with m.If(now):
                check(m, "nothing-out-that-was-not-put-in", injected & ~delivered)
                check(m, "delivered-at-its-destination", destination == output)
            coming_out.append(now)
            holding = Signal(range(len(fabric.paths[output]) + 1), name=f"out{output}_holding")
            m.d.comb += holding.eq(sum(register.valid
                                       & (register.payload.as_value() == watched.as_value())
                                       for register in fabric.paths[output]))
            check(m, "held-once-until-delivered",
                  holding == (in_flight & (destination == output)))
        with m.If(Cat(coming_out).any()):
            m.d.sync += delivered.eq(1)
        self.properties.cover(m, "delivered", Cat(coming_out).any())
        return m
