from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import check_int

__all__ = ["RoundRobinArbiter"]


class RoundRobinArbiter(wiring.Component):
    """Round-robin arbiter.

    Grants the requester at or after the priority pointer. Advancing moves the pointer just past
    the current grant, so a requester that keeps requesting is granted again after at most
    ``count - 1`` grants to others.

    Parameters
    ----------
    count : int
        Number of requesters, 2 to 64.

    Members
    -------
    requests : In(count)
        One bit per requester.
    grant : Out(range(count))
        The granted requester; meaningful while ``valid`` is asserted. Combinational from
        ``requests`` and the pointer.
    valid : Out(1)
        Some requester is granted (any request bit is set).
    advance : In(1)
        Accept the current grant: the pointer moves to ``grant + 1`` at the next clock edge.
        Ignored while ``valid`` is low.
    """

    def __init__(self, *, count=4):
        self._count = check_int(self, "count", count, 2, 64)
        super().__init__({
            "requests": In(count),
            "grant": Out(range(count)),
            "valid": Out(1),
            "advance": In(1),
        })

    @property
    def count(self):
        return self._count

    def elaborate(self, platform):
        m = Module()
        count = self._count
        pointer = Signal(range(count))

        # Requests at or above the pointer win; if there are none, wrap around to the lowest.
        at_or_above = Signal(count)
        m.d.comb += at_or_above.eq(self.requests & Cat(
            # The last position is at or above every pointer value.
            pointer <= index if index < count - 1 else C(1) for index in range(count)))
        for index in reversed(range(count)):
            with m.If(self.requests[index]):
                m.d.comb += self.grant.eq(index)
        for index in reversed(range(count)):
            with m.If(at_or_above[index]):
                m.d.comb += self.grant.eq(index)
        m.d.comb += self.valid.eq(self.requests.any())

        # Move the pointer past an accepted grant.
        with m.If(self.advance & self.valid):
            m.d.sync += pointer.eq(Mux(self.grant == count - 1, 0, self.grant + 1))
        return m
