"""The whole message path on both simulators: the examples' scenarios on the RTL System with the
behavioural nodes, scored against the reference NI (tb/system_tb.py)."""

import tomllib
from pathlib import Path

import pytest

from behavioral import kernel
from behavioral.scenario import parse
from tb import cli
from tb.experiments import send_buffering
from tb.runner import SIMULATORS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, sim, seed, options=None, count=None, entries=None):
    """Run ``examples/NAME.toml`` (with ``count`` messages per traffic entry, and only the
    traffic entries of index ``entries``, if given)."""
    document = tomllib.loads((EXAMPLES / f"{name}.toml").read_text())
    if entries is not None:
        document["traffic"] = [document["traffic"][index] for index in entries]
    if count is not None:
        for entry in document["traffic"]:
            entry["count"] = count
    scenario = parse(document, seed=seed)
    result, records, summary, mismatches = cli._run_scenario(
        document, scenario, sim=sim, seed=seed, waves=False, label=f"pytest-{name}",
        options=options)
    assert result.passed and summary["mismatches"] == 0, \
        f"seed {seed}: {result.message} {mismatches[:3]}; log {result.log}"
    assert len(records) == len(scenario.messages)
    return {record["id"]: record for record in records}, summary


@pytest.mark.parametrize("sim", SIMULATORS)
def test_pingpong_in_every_mode_pio_and_dma_8_bytes_to_2_kib(sim, seed):
    """A client plays ping-pong with a LOCK, a BRANCH and a SPAWN server and polls for the
    answers (NONE), with PIO and DMA messages of 8 B, 512 B and 2 KiB: every message delivered,
    consumed once by its receiver through its mode, and the stamps in order."""
    records, _ = run_example("modes", sim, seed)
    assert {record["status"] for record in records.values()} == {"delivered"}
    assert {(r["notify"], r["send"], r["bytes"]) for r in records.values()} == {
        (mode, send, size) for mode in ("none", "lock", "branch", "spawn")
        for send in ("pio", "dma") for size in (8, 512, 2048)}
    for record in records.values():
        assert (record["t_doorbell"] < record["t_first_flit"] < record["t_last_flit_in"]
                < record["t_completion"] <= record["t_handler"]), record


@pytest.mark.parametrize("sim", SIMULATORS)
def test_2_kib_messages_stream_at_the_link_rate_pio_and_dma(sim, seed):
    """examples/stream.toml with two messages of each kind: every 2 KiB message, PIO or DMA,
    leaves its sender's NI and enters its receiver's at 95 % of the link's rate or more, first
    flit to last (DESIGN §8), and the receiving NI takes 95 % or more of the flits the Fabric
    offers it in the cycle they are offered."""
    records, summary = run_example("stream", sim, seed, count=2)
    assert {(r["send"], r["status"]) for r in records.values()} == {("pio", "delivered"),
                                                                    ("dma", "delivered")}
    for record in records.values():
        out, into = cli.link_rates(record)
        assert out >= 0.95 and into >= 0.95, (out, into, record)
    link = summary["links"]["1"]
    assert link["in_flits"] == 4 * cli.message_flits(2048)
    assert link["in_flits"] / (link["in_flits"] + link["in_held"]) >= 0.95, link


def test_three_nodes_streaming_into_one_are_taken_at_the_link_rate(seed):
    """examples/fanin.toml with ten messages from each sender, on Icarus (Verilator runs it in
    the lockstep comparison below, on smaller tables, which compares the links' counts): every
    message is
    delivered; the links' counts add up: the flits out of the three senders are the flits
    into the receiver, a message's flits each (what `smtni run` reports the receiver's share
    from); and the receiving NI takes 95 % or more of the flits the Fabric offers it in the
    cycle they are offered (DESIGN §8), its memory merges of partial lines in flight enough to
    cover memory's latency."""
    records, summary = run_example("fanin", "icarus", seed, count=10)
    assert {record["status"] for record in records.values()} == {"delivered"}
    links = summary["links"]
    assert [links[node]["out_flits"] for node in "123"] == [10 * cli.message_flits(8)] * 3
    assert links["0"]["in_flits"] == 30 * cli.message_flits(8) and links["0"]["out_flits"] == 0
    assert links["0"]["in_flits"] / (links["0"]["in_flits"] + links["0"]["in_held"]) >= 0.95, links
    for record in records.values():
        assert all(0 < rate <= 1 for rate in cli.link_rates(record)), record


@pytest.mark.parametrize("sim", SIMULATORS)
def test_four_nodes_random_all_to_all(sim, seed):
    """Random traffic among 4 nodes (PIO 64 B and DMA 1 KiB, every receiving mode)."""
    records, summary = run_example("alltoall", sim, seed)
    assert {record["status"] for record in records.values()} == {"delivered"}
    assert summary["delivered"] == 24


@pytest.mark.parametrize("sim", SIMULATORS)
def test_crossfire_of_full_rings_does_not_deadlock(sim, seed):
    """Two processes send 40 messages each at the other before receiving any: their rings fill
    while both still send (a deadlock, stalled at the deadline, unless a waiting sender consumes
    its own arrivals); the run takes about 7,500 cycles."""
    records, summary = run_example("crossfire", sim, seed, options={"timeout_cycles": 60_000})
    assert {record["status"] for record in records.values()} == {"delivered"}
    assert summary["delivered"] == 80


#: A LOCK receiver ("a") that only polls while it streams to a process of its own node, and
#: whose count of signals not waited for holds 3 (``lock_count_bits`` 2): the fourth message
#: from "b" fills the count unless "a" waits once per notified message it consumes; then node
#: 0's reception stops, "a"'s own sends to "c" cannot leave, and "a" never gets to wait.
LOCK_COUNT_DOCUMENT = {
    "system": {"nodes": 2, "params": {"lock_count_bits": 2}},
    "process": [
        {"name": "a", "node": 0, "notify": "lock",
         "window": {"va": 0x1000_0000, "bytes": 65536, "key": 0xA}},
        {"name": "c", "node": 0, "endpoint": 1, "notify": "none",
         "window": {"va": 0x1000_0000, "bytes": 65536, "key": 0xC}},
        {"name": "b", "node": 1, "notify": "none",
         "window": {"va": 0x1000_0000, "bytes": 65536, "key": 0xB}},
    ],
    "traffic": [
        {"pattern": "stream", "from": "a", "to": "c", "bytes": 512, "count": 16},
        {"pattern": "stream", "from": "b", "to": "a", "bytes": 8, "count": 8},
    ],
}


def test_a_lock_receiver_that_polls_waits_for_each_signal(seed):
    """The lock counts the signals a LOCK receiver has not waited for, and a full count holds
    the NI's reception: a receiver that finds its messages by polling while it sends still
    waits once for each, so the count never fills and the run ends (it stalls at the
    deadline otherwise). (On Icarus: its System, with a 2-bit count, is a build of its own,
    and what is tested is the message library's and the RTL's, alike on both simulators.)"""
    scenario = parse(LOCK_COUNT_DOCUMENT, seed=seed)
    result, records, summary, mismatches = cli._run_scenario(
        LOCK_COUNT_DOCUMENT, scenario, sim="icarus", seed=seed, waves=False,
        label="pytest-lock-count", options={"timeout_cycles": 40_000})
    assert result.passed and summary["mismatches"] == 0, \
        f"seed {seed}: {result.message} {mismatches[:3]}; log {result.log}"
    assert {record["status"] for record in records} == {"delivered"}
    assert summary["delivered"] == 24


FAULT_STATUSES = {
    0: "delivered",
    1: "refused_foreign_asid",          # MMIO to another process's endpoint
    2: "refused_bad_length",
    3: "refused_bad_node",
    4: "refused_bad_flags",
    5: "refused_dma_fault",             # DMA from a page the NI may not read
    6: "refused_dma_rejected",          # DMA from an unmapped page: the OS rejects the miss
    7: "rejected",                      # remote VA unmapped: REJECTED entry, no payload
    8: "discarded_rx_key",              # wrong window key
    9: "discarded_rx_permission",       # landing page not remotely writable
    10: "delivered",                    # no notify: seen with the next message
    11: "delivered",
}


@pytest.mark.parametrize("sim", SIMULATORS)
def test_every_bad_input_ends_as_defined(sim, seed):
    """DESIGN §7, the rows software can cause: each bad send or message ends as defined (the
    scoreboard checks that no memory was written for it and that the faults reported are the
    model's), and the slow consumer's stream is delivered whole."""
    records, summary = run_example("faults", sim, seed)
    assert {i: records[i]["status"] for i in FAULT_STATUSES} == FAULT_STATUSES
    stream = [records[i] for i in records if i not in FAULT_STATUSES]
    assert len(stream) == 24 and {r["status"] for r in stream} == {"delivered"}
    ports = summary["nodes"]["0"]["ports"]
    assert ports["fault_foreign_asid"] == 1 and ports["fault_tx_permission"] == 1
    receiver = summary["nodes"]["1"]["ports"]
    assert receiver["fault_rx_key"] == receiver["fault_rx_permission"] == 1
    assert receiver["fault_rx_rejected"] == 1


@pytest.mark.parametrize("sim", SIMULATORS)
def test_oversubscribed_contexts_go_through_the_os(sim, seed):
    """Five receivers on four contexts: SPAWNs with no free context and notifications for
    threads that are not resident go to the OS, which delivers each exactly once."""
    records, summary = run_example("oversubscribed", sim, seed)
    assert {record["status"] for record in records.values()} == {"delivered"}
    server = summary["nodes"]["1"]
    assert server["os_received"].get("NO_CONTEXT", 0) > 0, server
    assert server["os_received"].get("NOT_RESIDENT", 0) > 0, server
    assert server["os_received"] == server["os_delivered"], server


@pytest.mark.parametrize("sim", SIMULATORS)
def test_interrupt_mode_takes_the_kernel_path_through_the_node_caches(sim, seed):
    """A server armed with INTERRUPT: every arrival goes to its OS, which takes the kernel's
    interrupt path and runs the handler; each message delivered once. The path's lines go
    through the node's own caches: the compute thread's working set, the size of the L2, evicted
    them all before the first interrupt (which misses on every one) and more between
    interrupts; the last interrupt left most of them cached. Icarus runs 2 of the 6 round trips
    (8 B PIO, 2 KiB DMA): the OS's path is Python, the same on both simulators."""
    records, summary = run_example("interrupt", sim, seed,
                                   entries=(0, 5) if sim == "icarus" else None)
    assert {record["status"] for record in records.values()} == {"delivered"}
    server = summary["nodes"]["1"]
    pings = [r for r in records.values() if r["to"] == "interrupt-server"]
    assert server["os_received"] == server["os_delivered"] == {"INTERRUPT": len(pings)}, server
    footprint = sum(step.code_lines + step.data_lines for step in kernel.STEPS)
    assert server["os"]["interrupts"] == len(pings)
    assert server["os"]["interrupt_l2_misses"] > footprint, server
    assert server["kernel_lines_cached"] > footprint // 2, server
    assert summary["nodes"]["0"]["os"]["interrupts"] == 0
    assert summary["compute"]["1"]["l2_misses_per_kilo"] > 0, summary["compute"]
    instructions = sum(step.instructions for step in kernel.STEPS)
    for record in pings:
        # (the handler starts after the path, at least its instructions at one per cycle)
        assert record["t_handler"] - record["t_notified"] > instructions, record
    assert summary["rx_counters"]["1"]["delivered"] == len(pings)


@pytest.mark.parametrize("sim", SIMULATORS)
def test_compute_working_sets_miss_by_their_size_and_a_gap_spaces_the_sends(sim, seed):
    """[system.memory] makes the L1 4 KiB and the L2 16 KiB: node 1's compute thread walks twice
    the L2 and misses it on most loads, node 0's walks 2 KiB, preloaded, and never misses; the
    sender's gap of
    2,000 instructions (1,000 cycles at least, 2 issued a cycle) spaces its sends."""
    document = {
        "system": {"nodes": 2, "memory": {"l1_bytes": 4096, "l2_bytes": 16384}},
        "process": [{"name": "sender", "node": 0, "notify": "none",
                     "window": {"va": 0x1000_0000, "bytes": 4096, "key": 1}},
                    {"name": "receiver", "node": 1, "notify": "lock",
                     "window": {"va": 0x1000_0000, "bytes": 4096, "key": 2}}],
        "traffic": [{"pattern": "stream", "from": "sender", "to": "receiver", "bytes": 64,
                     "count": 5, "gap": 2000}],
        "compute": [{"node": 1, "instructions": 16, "lines": 512},
                    {"node": 0, "instructions": 16, "lines": 32}],
    }
    scenario = parse(document, seed=seed)
    result, records, summary, mismatches = cli._run_scenario(
        document, scenario, sim=sim, seed=seed, waves=False, label="pytest-working-sets")
    assert result.passed and summary["mismatches"] == 0, f"seed {seed}: {mismatches[:3]}"
    assert {record["status"] for record in records} == {"delivered"}
    compute = summary["compute"]
    # (a random walk over 512 lines in a 256-line L2: about half the loads miss, 1 per turn)
    assert compute["1"]["l2_misses_per_kilo"] > 1000 / 16 / 4, compute
    assert compute["0"]["l2_misses_per_kilo"] == 0, compute
    starts = [record["t_start"] for record in sorted(records, key=lambda r: r["id"])]
    assert all(later - earlier >= 1000 for earlier, later in zip(starts, starts[1:])), starts


#: Figures of a run's summary that are the host's, not the simulation's.
_WALL_CLOCK = ("wall_s", "cycles_per_s")


#: The examples whose lockstep runs Icarus repeats too (Verilator runs them all): what is compared
#: is Python's scheduling of the cores and ports, the same on both simulators, and the other
#: examples' lockstep runs take minutes each on Icarus.
ICARUS_LOCKSTEP = ("faults", "pingpong")
#: Messages per traffic entry of the examples whose lockstep runs are cut short: measurements,
#: long to be read as one (the link tests above run them short too), and random4's 40 messages,
#: alike in kind.
LOCKSTEP_COUNT = {"fanin": 6, "stream": 1, "random4": 8}
#: The 4-node examples on the default tables whose lockstep runs take alltoall's smaller tables
#: instead: what is compared does not depend on the tables, and alltoall's build serves them.
LOCKSTEP_ON_SMALL_TABLES = ("fanin", "random4")


@pytest.mark.parametrize("sim, name", [
    (sim, path.stem) for path in sorted(EXAMPLES.glob("*.toml")) for sim in SIMULATORS
    if sim == "verilator" or path.stem in ICARUS_LOCKSTEP])
def test_event_driven_run_equals_lockstep(name, sim, seed):
    """The event-driven run (cores skip the cycles in which they have nothing to do, ports wake
    Python only when they have work) gives exactly the per-message records (every stamp) and the
    summary of the run that steps every core at every cycle (``smtni run --lockstep``)."""
    document = tomllib.loads((EXAMPLES / f"{name}.toml").read_text())
    for entry in document["traffic"] if name in LOCKSTEP_COUNT else ():
        entry["count"] = LOCKSTEP_COUNT[name]
    if name in LOCKSTEP_ON_SMALL_TABLES:
        small = tomllib.loads((EXAMPLES / "alltoall.toml").read_text())["system"]
        assert document["system"]["nodes"] == small["nodes"] and "params" not in document["system"]
        document["system"]["params"] = small["params"]
    scenario = parse(document, seed=seed)
    runs = []
    for lockstep in (False, True):
        result, records, summary, mismatches = cli._run_scenario(
            document, scenario, sim=sim, seed=seed, waves=False,
            label=f"pytest-{name}-lockstep{int(lockstep)}", options={"lockstep": int(lockstep)})
        assert result.passed and summary["mismatches"] == 0, \
            f"seed {seed}, lockstep {lockstep}: {result.message} {mismatches[:3]}; {result.log}"
        assert len(records) == len(scenario.messages)
        runs.append((records, {k: v for k, v in summary.items() if k not in _WALL_CLOCK}))
    (records, summary), (lockstep_records, lockstep_summary) = runs
    for record, oracle in zip(records, lockstep_records, strict=True):
        assert record == oracle, f"seed {seed}: event-driven {record}, lockstep {oracle}"
    assert summary == lockstep_summary, f"seed {seed}"


def test_what_the_os_tunes_sets_the_dma_lines_ahead_and_the_link_rate(seed):
    """examples/stream.toml's DMA messages on the System of the send-buffering experiment (its
    link rate tunable, 16 lines of send buffering at most), the OS tuning at boot
    ([system.tune]): one line fetched ahead of the wire cannot keep 2 KiB at the link's rate
    (four can: the test of examples/stream.toml above), and the links tuned to a flit per 4
    cycles carry one at that rate. (Icarus, as
    the experiment's test: the tunables are the RTL's, the same on both simulators, and this
    System is a build of its own.)"""
    def stream(tune):
        document = tomllib.loads((EXAMPLES / "stream.toml").read_text())
        document["system"]["params"] = dict(send_buffering.SYSTEM)
        document["system"]["tune"] = tune
        document["traffic"] = [{**document["traffic"][-1], "count": 1, "send": "dma"}]
        scenario = parse(document, seed=seed)
        result, records, summary, mismatches = cli._run_scenario(
            document, scenario, sim="icarus", seed=seed, waves=False,
            label=f"pytest-tune-{'-'.join(map(str, tune.values()))}")
        assert result.passed and summary["mismatches"] == 0, \
            f"seed {seed}: {result.message} {mismatches[:3]}; log {result.log}"
        assert {record["status"] for record in records} == {"delivered"}
        return [cli.link_rates(record) for record in records]

    assert all(out < 0.5 for out, _ in stream({"send_buffering": 1}))
    assert all(abs(into - 0.25) < 0.01 for _, into in stream({"cycles_per_flit": 4}))
