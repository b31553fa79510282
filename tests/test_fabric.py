import pytest

from behavioral.fabric import FabricModel
from behavioral.message import Message
from rtl.fabric import Fabric
from rtl.layouts import Flit, codec
from tests.sim import run


def drive(dut, sends, *, cycles, ready=lambda cycle, port: True, rates=None):
    """Run ``dut`` for ``cycles``; return per-output lists of (cycle, data, last) and the inputs'
    acceptance cycles. ``sends`` maps an input port to a list of (data, last) flits;
    ``rates(cycle, port)``, if given, sets ``link_cycles_per_flit[port]`` in each cycle."""
    queues = {port: list(flits) for port, flits in sends.items()}
    outputs = {port: [] for port in range(dut.nodes)}
    accepted = {port: [] for port in range(dut.nodes)}

    async def bench(ctx):
        for cycle in range(cycles):
            for port, stream in enumerate(dut.inputs):
                queue = queues.get(port)
                ctx.set(stream.valid, bool(queue))
                if queue:
                    data, last = queue[0]
                    ctx.set(stream.payload.as_value(), codec(Flit).pack(data=data, last=last))
            for port, stream in enumerate(dut.outputs):
                ctx.set(stream.ready, ready(cycle, port))
                if rates is not None:
                    ctx.set(dut.link_cycles_per_flit[port], rates(cycle, port))
            for port, stream in enumerate(dut.inputs):
                if ctx.get(stream.valid) and ctx.get(stream.ready):
                    queues[port].pop(0)
                    accepted[port].append(cycle)
            for port, stream in enumerate(dut.outputs):
                if ctx.get(stream.valid) and ctx.get(stream.ready):
                    flit = codec(Flit).unpack(ctx.get(stream.payload.as_value()))
                    outputs[port].append((cycle, flit["data"], bool(flit["last"])))
            await ctx.tick()

    run(dut, bench)
    return outputs, accepted


def messages_of(outputs, port):
    """Split an output's flits into messages at ``last``."""
    messages, current = [], []
    for _, data, last in outputs[port]:
        current.append((data, last))
        if last:
            messages.append(current)
            current = []
    assert not current, "an output stopped in the middle of a message"
    return messages


@pytest.mark.parametrize("link_latency", [0, 2])
def test_routes_by_destination_with_fixed_latency(link_latency):
    dut = Fabric(nodes=4, link_latency=link_latency)
    message = Message(dst_node=2, src_node=1, payload=bytes(range(24)))
    outputs, accepted = drive(dut, {1: message.flits()}, cycles=20)
    assert messages_of(outputs, 2) == [message.flits()]
    assert all(not outputs[port] for port in (0, 1, 3))
    assert outputs[2][0][0] - accepted[1][0] == 1 + link_latency
    # No bubbles: one flit per cycle in and out.
    assert accepted[1] == list(range(accepted[1][0], accepted[1][0] + len(message.flits())))
    cycles_out = [cycle for cycle, _, _ in outputs[2]]
    assert cycles_out == list(range(cycles_out[0], cycles_out[0] + len(message.flits())))


def test_unknown_destination_dropped_whole_and_counted():
    dut = Fabric(nodes=3, link_latency=1)
    bad = Message(dst_node=7, src_node=0, payload=bytes(16))
    good = Message(dst_node=1, src_node=0, seq=1, payload=bytes(8))
    outputs, _ = drive(dut, {0: bad.flits() + good.flits() + bad.flits()}, cycles=30)
    assert messages_of(outputs, 1) == [good.flits()]
    assert not outputs[0] and not outputs[2]


def test_drop_counter_counts_each_dropped_message():
    dut = Fabric(nodes=2, link_latency=0)
    bad = Message(dst_node=5, src_node=1).flits()
    counts = []

    async def bench(ctx):
        for flits in (bad, bad, bad):
            for data, last in flits:
                ctx.set(dut.inputs[1].valid, 1)
                ctx.set(dut.inputs[1].payload.as_value(), codec(Flit).pack(data=data, last=last))
                assert ctx.get(dut.inputs[1].ready)
                await ctx.tick()
            ctx.set(dut.inputs[1].valid, 0)
            await ctx.tick()        # the counter counts a cycle after the last flit
            counts.append(ctx.get(dut.dropped))

    run(dut, bench)
    assert counts == [1, 2, 3]


def test_wormhole_keeps_messages_contiguous_under_contention():
    dut = Fabric(nodes=4, link_latency=1)
    model = FabricModel(4)
    sends = {}
    for src in range(4):
        flits = []
        for seq in range(3):
            message = Message(dst_node=0, src_node=src, seq=seq,
                              payload=bytes([src, seq]) * 4 * (seq + 1))
            flits += message.flits()
            model.sent(src, message.flits())
        sends[src] = flits
    outputs, _ = drive(dut, sends, cycles=200, ready=lambda cycle, port: cycle % 3 != 0)
    for message in messages_of(outputs, 0):
        model.delivered(0, message)
    assert model.finish(dropped_count=0) == []
    # Round robin: the first four messages come from four different inputs.
    firsts = [Message.from_flits(m).src_node for m in messages_of(outputs, 0)[:4]]
    assert sorted(firsts) == [0, 1, 2, 3]


def test_backpressure_holds_flits():
    dut = Fabric(nodes=2, link_latency=2)
    message = Message(dst_node=0, src_node=1, payload=bytes(range(64)))
    outputs, _ = drive(dut, {1: message.flits()}, cycles=60, ready=lambda cycle, port: cycle >= 30)
    assert messages_of(outputs, 0) == [message.flits()]
    assert outputs[0][0][0] == 30


@pytest.mark.parametrize("cycles_per_flit", [2, 5])
def test_rate_limiter_spaces_flits(cycles_per_flit):
    dut = Fabric(nodes=2, link_latency=1, cycles_per_flit=cycles_per_flit)
    message = Message(dst_node=1, src_node=0, payload=bytes(32))
    outputs, _ = drive(dut, {0: message.flits()}, cycles=100)
    cycles_out = [cycle for cycle, _, _ in outputs[1]]
    assert messages_of(outputs, 1) == [message.flits()]
    assert {b - a for a, b in zip(cycles_out, cycles_out[1:])} == {cycles_per_flit}


@pytest.mark.parametrize("kwargs, error", [
    (dict(nodes=1), "nodes must be between 2 and 16, not 1"),
    (dict(nodes=17), "nodes must be between 2 and 16, not 17"),
    (dict(link_latency=-1), "link_latency"),
    (dict(cycles_per_flit=0), "cycles_per_flit"),
])
def test_rejects_bad_parameters(kwargs, error):
    with pytest.raises(ValueError, match=error):
        Fabric(**kwargs)


def test_rejects_non_integer_parameter():
    with pytest.raises(TypeError, match="nodes must be an integer, not '4'"):
        Fabric(nodes="4")


from amaranth.hdl import Fragment, Shape

from rtl.params import silence_unused


def test_default_parameters_and_counter_width():
    dut = Fabric()
    assert (dut.nodes, dut.link_latency, dut.cycles_per_flit) == (2, 2, 1)
    assert Shape.cast(dut.signature.members["dropped"].shape) == Shape(32)
    Fragment.get(dut, None)


def test_rejects_parameters_past_their_upper_bounds():
    for kwargs, error in ((dict(link_latency=17), "link_latency must be between 0 and 16, not 17"),
                          (dict(cycles_per_flit=257),
                           "cycles_per_flit must be between 1 and 256, not 257")):
        with pytest.raises(ValueError, match=error):
            Fabric(**kwargs)


def test_destination_one_past_the_last_node_is_dropped():
    dut = Fabric(nodes=3, link_latency=0)
    bad = Message(dst_node=3, src_node=0, payload=bytes(16))
    good = Message(dst_node=1, src_node=0, seq=1, payload=bytes(8))
    outputs, _ = drive(dut, {0: bad.flits() + good.flits()}, cycles=30)
    assert messages_of(outputs, 1) == [good.flits()]
    assert not outputs[0] and not outputs[2]


def test_sixteen_nodes_route_a_message_from_the_last_to_the_first():
    dut = Fabric(nodes=16, link_latency=0)
    message = Message(dst_node=0, src_node=15, payload=bytes(range(24)))
    outputs, _ = drive(dut, {15: message.flits()}, cycles=40,
                       ready=lambda cycle, port: cycle % 3 != 0)
    assert messages_of(outputs, 0) == [message.flits()]


def test_rate_limiter_of_four_cycles_spaces_flits():
    # A gap counter counting up by mistake wraps to zero in time for 2, 3 and 5, not for 4.
    dut = Fabric(nodes=2, link_latency=1, cycles_per_flit=4)
    message = Message(dst_node=1, src_node=0, payload=bytes(32))
    outputs, _ = drive(dut, {0: message.flits()}, cycles=100)
    cycles_out = [cycle for cycle, _, _ in outputs[1]]
    assert {b - a for a, b in zip(cycles_out, cycles_out[1:])} == {4}


def test_a_tunable_rate_is_taken_at_each_flit_per_output():
    """With ``max_cycles_per_flit``, each output spaces its flits by its own rate as it is at
    each flit's transfer: output 1 at 3, output 0 at 1 then 6 from cycle 8."""
    dut = Fabric(nodes=2, link_latency=1, cycles_per_flit=2, max_cycles_per_flit=6)
    to_1 = Message(dst_node=1, src_node=0, payload=bytes(32))
    to_0 = Message(dst_node=0, src_node=1, payload=bytes(range(96)))
    outputs, _ = drive(dut, {0: to_1.flits(), 1: to_0.flits()}, cycles=200,
                       rates=lambda cycle, port: 3 if port else (1 if cycle < 8 else 6))
    assert messages_of(outputs, 1) == [to_1.flits()] and messages_of(outputs, 0) == [to_0.flits()]
    gaps = {port: [b[0] - a[0] for a, b in zip(outputs[port], outputs[port][1:])]
            for port in (0, 1)}
    assert set(gaps[1]) == {3}
    # (a flit a cycle, then from a flit near cycle 8 on, one every 6)
    ones = gaps[0].index(6)
    assert ones >= 2 and gaps[0] == [1] * ones + [6] * (len(gaps[0]) - ones), gaps[0]
    assert len(gaps[0]) - ones >= 2


def test_a_tunable_rate_starts_at_cycles_per_flit():
    dut = Fabric(nodes=2, link_latency=0, cycles_per_flit=5, max_cycles_per_flit=9)
    assert dut.link_cycles_per_flit[0].init == 5 and len(dut.link_cycles_per_flit[0]) == 4
    message = Message(dst_node=1, src_node=0, payload=bytes(32))
    outputs, _ = drive(dut, {0: message.flits()}, cycles=100)
    assert {b[0] - a[0] for a, b in zip(outputs[1], outputs[1][1:])} == {5}


@pytest.mark.parametrize("kwargs, error", [
    (dict(max_cycles_per_flit=1), "max_cycles_per_flit 1 must be 0 \\(a fixed rate\\) or from 2"),
    (dict(cycles_per_flit=8, max_cycles_per_flit=4),
     "max_cycles_per_flit 4 must be 0 \\(a fixed rate\\) or from 8 \\(above 1, and at least "
     "cycles_per_flit 8\\) to 256"),
    (dict(max_cycles_per_flit=257), "max_cycles_per_flit must be between 0 and 256, not 257"),
])
def test_a_bad_max_cycles_per_flit_is_named(kwargs, error):
    with pytest.raises(ValueError, match=error):
        Fabric(**kwargs)


def test_a_fixed_rate_has_no_rate_input():
    dut = Fabric(cycles_per_flit=4)
    assert "link_cycles_per_flit" not in dut.signature.members
    silence_unused(dut)
