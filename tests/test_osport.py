"""Unit tests of the NI's OS port (rtl/osport.py) in the Amaranth simulator: where each command
goes, what each unit gets, the holding of a command until every unit has taken its part, the
wait after a TLB command, and the commands naming what the NI does not have. The units are the
testbench: each output is ready when it says."""

import pytest
from amaranth.hdl import Value

from rtl.params import silence_unused
from rtl.layouts import (EndpointEntry, EndpointWrite, NiEngine, NiOsOp, NiTunable,
                         NotifierCommandOp, NotifyMode, Residency, TlbOp, codec,
                         notifier_command_layout, tlb_command_layout)
from rtl.osport import OsPort
from rtl.tlb import NITLB
from tests.sim import background, edges, run, stream_put, tracer, transfer

OUTPUTS = ("endpoint_write", "notifier", "tlb", "residency", "tx_miss_answer", "rx_miss_answer")
ENTRY = dict(enabled=1, asid=0x5A, thread=0x21, ring_log2=3, ring_pa=0x0010_0040,
             ring_va=0x7F00_0000_0040)
CONTEXT = dict(busy=1, thread=0x13)
FILL = dict(op=TlbOp.FILL, asid=0x5A, vpn=0x4000_0001, ppn=0x200, perm={"remote_write": 1},
            key=0xBEEF)
DEADLINE = 400


def write_endpoint(index, **fields):
    return dict(op=NiOsOp.WRITE_ENDPOINT, index=index, endpoint=ENTRY | fields)


def write_context(index, **fields):
    return dict(op=NiOsOp.WRITE_CONTEXT, index=index, context=CONTEXT | fields)


def miss_answer(engine, reject):
    return dict(op=NiOsOp.MISS_ANSWER, engine=engine, reject=reject)


class Bench:
    """An OS port of 2 endpoints and 2 contexts; ``ready(name, edge)`` says whether output
    ``name`` is ready at clock edge ``edge`` (always, unless given). ``log`` has every edge's
    transfers and payloads."""

    def __init__(self, ready=None, *, endpoints=2, contexts=2, send_buffering=4,
                 cycles_per_flit=1, max_cycles_per_flit=0):
        self.dut = OsPort(endpoints=endpoints, contexts=contexts, asid_bits=8,
                          send_buffering=send_buffering, cycles_per_flit=cycles_per_flit,
                          max_cycles_per_flit=max_cycles_per_flit)
        self.ready = ready or (lambda name, edge: True)
        self.layouts = {"endpoint_write": EndpointWrite,
                        "notifier": notifier_command_layout(endpoints, contexts),
                        "tlb": tlb_command_layout(8), "residency": Residency}
        self.log = []

    def run(self, commands, cycles=40):
        dut = self.dut

        async def send(ctx):
            for command in commands:
                await stream_put(ctx, dut.command, command)
            await ctx.tick().repeat(cycles)

        @background
        async def units(ctx):
            edge = 0
            while True:
                for name in OUTPUTS:
                    ctx.set(getattr(dut, name).ready, self.ready(name, edge))
                await ctx.tick()
                edge += 1

        watch = tracer(self.log, command=transfer(dut.command),
                       send_buffering=dut.send_buffering,
                       link_cycles_per_flit=dut.link_cycles_per_flit,
                       **{name: transfer(getattr(dut, name)) for name in OUTPUTS},
                       **{f"{name}_payload": Value.cast(getattr(dut, name).payload)
                          for name in OUTPUTS})
        run(dut, send, units, watch, deadline_cycles=DEADLINE)

    def taken(self, name):
        """The payloads taken on output ``name``, as dicts of fields (miss answers: reject)."""
        payloads = [row[f"{name}_payload"] for row in self.log if row[name]]
        if name.endswith("miss_answer"):
            return payloads
        return [codec(self.layouts[name]).unpack(bits) for bits in payloads]


def test_each_command_reaches_its_units_with_its_part():
    """WRITE_ENDPOINT: the table (the entry) and the Notifier (WRITE_ENDPOINT, mode NONE, the
    entry's ASID and thread); WRITE_CONTEXT: the Notifier (the context) and the lock table (its
    residency); TLB: the NI TLB (the command); MISS_ANSWER: the engine it names (retry or
    reject). Nothing goes anywhere else."""
    bench = Bench()
    bench.run([write_endpoint(1), write_context(1), dict(op=NiOsOp.TLB, tlb=FILL),
               miss_answer(NiEngine.RX, 1), miss_answer(NiEngine.TX, 0),
               write_context(0, busy=0)])
    assert bench.taken("endpoint_write") == [
        dict(index=1, entry=codec(EndpointEntry).unpack(codec(EndpointEntry).pack(**ENTRY)))]
    notifier = bench.taken("notifier")
    assert [command["op"] for command in notifier] == [NotifierCommandOp.WRITE_ENDPOINT,
                                                       NotifierCommandOp.WRITE_CONTEXT,
                                                       NotifierCommandOp.WRITE_CONTEXT]
    assert [command["index"] for command in notifier] == [1, 1, 0]
    first = notifier[0]["endpoint"]
    assert (first["mode"], first["asid"], first["thread"]) == (NotifyMode.NONE, 0x5A, 0x21)
    assert (first["lock"], first["handler_pc"], first["stack"]) == (0, 0, 0)
    assert (notifier[1]["context"]["busy"], notifier[1]["context"]["thread"]) == (1, 0x13)
    assert (notifier[2]["context"]["busy"], notifier[2]["context"]["thread"]) == (0, 0x13)
    assert bench.taken("residency") == [dict(context=1, resident=1, thread=0x13),
                                        dict(context=0, resident=0, thread=0x13)]
    tlb = codec(tlb_command_layout(8))
    assert [tlb.pack(**command) for command in bench.taken("tlb")] == [tlb.pack(**FILL)]
    assert bench.taken("rx_miss_answer") == [1] and bench.taken("tx_miss_answer") == [0]


@pytest.mark.parametrize("command, unit", [
    (write_context(0), "residency"), (write_context(0), "notifier"),
    (write_endpoint(0), "notifier"), (dict(op=NiOsOp.TLB, tlb=FILL), "tlb"),
    (miss_answer(NiEngine.RX, 0), "rx_miss_answer"),
    (miss_answer(NiEngine.TX, 1), "tx_miss_answer")])
def test_a_command_is_held_until_every_unit_has_taken_it(command, unit):
    """A command whose unit is not ready until edge 8: the unit takes its part then, once; every
    other unit at once, once; the next command is taken at the edge after the last part is
    taken (after a TLB command, once the TLB has applied it), not before. The endpoint table
    takes a WRITE_ENDPOINT at the edge the command is taken."""
    bench = Bench(lambda name, edge: name != unit or edge >= 8)
    bench.run([command, write_context(6)])      # the second goes nowhere
    commands = edges(bench.log, "command")
    held = edges(bench.log, unit)
    assert held[0] == 8
    after = NITLB.MGMT_LATENCY + 1 if unit == "tlb" else 1
    assert commands[1] == 8 + after
    parts = [name for name in OUTPUTS if name != "endpoint_write" and bench.taken(name)]
    for name in parts:
        times = edges(bench.log, name)
        assert times == [8 if name == unit else commands[0] + 1], name
    if command["op"] == NiOsOp.WRITE_ENDPOINT:
        assert edges(bench.log, "endpoint_write") == [commands[0]]


def test_commands_follow_every_other_cycle_when_the_units_take_them_at_once():
    """With every unit ready, the port takes a command at every other edge: one held, one given
    to its units."""
    bench = Bench()
    bench.run([write_endpoint(0), write_context(1), write_endpoint(1), miss_answer(NiEngine.RX, 0)])
    commands = edges(bench.log, "command")
    assert commands == list(range(commands[0], commands[0] + 8, 2))


def test_after_a_tlb_command_nothing_is_taken_until_the_tlb_has_applied_it():
    """The command after a TLB command is taken at the edge after the TLB has applied it,
    MGMT_LATENCY edges after it took it (so that a MISS_ANSWER's retry sees the FILL), however
    long the TLB took to take it."""
    for wait in (0, 3):
        bench = Bench(lambda name, edge: not (name == "tlb" and edge < 2 + wait))
        bench.run([dict(op=NiOsOp.TLB, tlb=FILL), miss_answer(NiEngine.RX, 0)])
        commands, tlb = edges(bench.log, "command"), edges(bench.log, "tlb")
        assert len(tlb) == 1 and commands[1] == tlb[0] + NITLB.MGMT_LATENCY + 1, (wait, tlb)


@pytest.mark.parametrize("command", [write_endpoint(2), write_endpoint(10), write_context(2),
                                     write_context(6)])
def test_an_endpoint_or_context_the_ni_lacks_goes_nowhere(command):
    """WRITE_ENDPOINT of an endpoint at or above ``endpoints`` (10 is 0 in its low bit),
    WRITE_CONTEXT of a context at or above ``contexts``: taken, and nothing is written; the next
    command is taken at the next edge (there is nothing to wait for)."""
    bench = Bench()
    bench.run([command, miss_answer(NiEngine.TX, 1)])
    assert all(not bench.taken(name) for name in OUTPUTS if name != "tx_miss_answer")
    commands = edges(bench.log, "command")
    assert commands[1] == commands[0] + 1


def tune(index, value):
    return dict(op=NiOsOp.TUNE, index=index, value=value)


def test_tune_sets_the_send_buffering_at_the_edge_it_is_taken():
    """Up to the elaborated most, from 1; each value from the edge after the command's
    transfer, and the next command taken at the next edge (it goes to no unit)."""
    bench = Bench(send_buffering=6)
    values = [3, 1, 6]
    bench.run([tune(NiTunable.SEND_BUFFERING.value, value) for value in values])
    commands = edges(bench.log, "command")
    assert [bench.log[edge + 1]["send_buffering"] for edge in commands] == values
    assert [bench.log[edge]["send_buffering"] for edge in commands] == [6, 3, 1]
    assert commands == list(range(commands[0], commands[0] + 3))
    assert all(not bench.taken(name) for name in OUTPUTS)


def test_tune_sets_the_link_rate_up_to_the_slowest_and_leaves_the_buffering():
    bench = Bench(send_buffering=6, cycles_per_flit=2, max_cycles_per_flit=32)
    values = [32, 1, 33, 0, 7]
    bench.run([tune(NiTunable.CYCLES_PER_FLIT.value, value) for value in values])
    commands = edges(bench.log, "command")
    assert [bench.log[edge + 1]["link_cycles_per_flit"] for edge in commands] == [32, 1, 1, 1, 7]
    assert bench.log[0]["link_cycles_per_flit"] == 2
    assert {row["send_buffering"] for row in bench.log} == {6}


def test_a_fixed_link_rate_is_not_tuned():
    bench = Bench(cycles_per_flit=3)
    bench.run([tune(NiTunable.CYCLES_PER_FLIT.value, 2)])
    assert {row["link_cycles_per_flit"] for row in bench.log} == {3}


@pytest.mark.parametrize("command", [tune(NiTunable.SEND_BUFFERING.value, 0),
                                     tune(NiTunable.SEND_BUFFERING.value, 7),
                                     tune(NiTunable.SEND_BUFFERING.value, 0x8003),
                                     tune(2, 2), tune(15, 2),
                                     write_endpoint(1, asid=2) | dict(value=2),
                                     write_context(1) | dict(value=2),
                                     miss_answer(NiEngine.TX, 0) | dict(value=2)])
def test_a_value_out_of_range_an_unknown_tunable_or_another_op_tunes_nothing(command):
    bench = Bench(send_buffering=6, cycles_per_flit=2, max_cycles_per_flit=4)
    bench.run([command])
    assert {row["send_buffering"] for row in bench.log} == {6}
    assert {row["link_cycles_per_flit"] for row in bench.log} == {2}


@pytest.mark.parametrize("params, error, text", [
    (dict(send_buffering=0), ValueError, "send_buffering must be between 1 and 16, not 0"),
    (dict(send_buffering=17), ValueError, "send_buffering must be between 1 and 16, not 17"),
    (dict(endpoints=0), ValueError, "endpoints must be between 1 and 16, not 0"),
    (dict(endpoints=17), ValueError, "endpoints must be between 1 and 16, not 17"),
    (dict(contexts=0), ValueError, "contexts must be between 1 and 8, not 0"),
    (dict(contexts=9), ValueError, "contexts must be between 1 and 8, not 9"),
    (dict(asid_bits=0), ValueError, "asid_bits must be between 1 and 8, not 0"),
    (dict(asid_bits=9), ValueError, "asid_bits must be between 1 and 8, not 9"),
    (dict(endpoints="8"), TypeError, "endpoints must be an integer, not '8'"),
])
def test_bad_parameters_raise_naming_themselves(params, error, text):
    with pytest.raises(error, match=f"^{text}"):
        OsPort(**params)


def test_default_parameters():
    """8 endpoints, 4 contexts, 8-bit ASIDs, 4 lines of send buffering: the Notifier command and
    TLB command layouts, and the send buffering after reset."""
    port = OsPort()
    assert len(port.send_buffering) == 3 and port.send_buffering.init == 4
    assert port.notifier.payload.shape() == notifier_command_layout(8, 4)
    assert port.tlb.payload.shape() == tlb_command_layout(8)
    silence_unused(port)

