"""Soaks (:mod:`tb.soak`): the random scenarios they make, their command line, and a short soak
with link faults on each simulator (:data:`SHORT_SOAKS`), scored with no mismatch."""

import random

import pytest

from tb import cli
from tb.soak import MODES, run_seed, soak_document

from .test_cli import assert_one_line_error, smtni


@pytest.mark.parametrize("nodes", range(2, 9))
def test_every_soak_plans_with_every_mode_sizes_and_bad_sends(nodes):
    document = soak_document(nodes, nodes=nodes, messages=400)
    scenario = cli.plan(document, seed=nodes)
    assert scenario.nodes == nodes and scenario.params["link_faults"] == 1
    assert {process.notify.name.lower() for process in scenario.processes.values()} == set(MODES)
    sizes = [message.bytes for message in scenario.messages]
    assert min(sizes) == 0 and max(sizes) > 1024
    assert {message.send for message in scenario.messages} == {"pio", "dma"}
    assert any(message.va_offset is not None or message.local_va is not None
               for message in scenario.messages)


def test_a_soak_replays_from_its_seed():
    assert soak_document(5, nodes=3, messages=50) == soak_document(5, nodes=3, messages=50)
    assert soak_document(5, nodes=3, messages=50) != soak_document(6, nodes=3, messages=50)


@pytest.mark.parametrize("args, fragment", [
    (["--nodes", "9"], "--nodes 9: a soak has 2 to 8 nodes"),
    (["--fault-rate", "1.5"], "--fault-rate 1.5: give the chance per message, 0 to 1"),
    (["--messages", "0"], "argument --messages: '0' is not a positive integer"),
])
def test_bad_soak_arguments_are_one_line_and_status_2(capsys, args, fragment):
    status, _, err = smtni(capsys, "soak", *args)
    assert_one_line_error(status, err, fragment)


#: The short soaks (messages, percent of them with a link fault), about 20 to 25 faults each
#: (`make soak` runs the long ones).
SHORT_SOAKS = {"icarus": (60, 35), "verilator": (200, 10)}


@pytest.mark.parametrize("sim", SHORT_SOAKS)
def test_a_short_soak_with_link_faults_has_no_mismatch(sim):
    seed = random.randrange(1 << 31)
    messages, fault_percent = SHORT_SOAKS[sim]
    print(f"soak seed {seed} (replay: smtni soak --seed {seed} --nodes 2 --messages {messages} "
          f"--sim {sim} --fault-rate {fault_percent / 100})")
    result = run_seed(seed, nodes=2, messages=messages, sim=sim, fault_percent=fault_percent,
                      label=f"pytest-soak-{seed}")
    assert result["passed"] and result["mismatches"] == 0, result
    assert sum(result["faults_injected"].values()) > 0, result
    # Every message ended: delivered, or refused, rejected or discarded as DESIGN §7 says.
    assert result["delivered"] + sum(result["outcomes"].values()) == messages, result
    assert result["outcomes"].get("discarded_bad_crc", 0) > 0, result
