"""Scenario documents, generated and mutated with hypothesis: the planner of ``smtni run``
(:func:`tb.cli.plan`) refuses each in one line naming it, or plans a scenario that sets up.

The documents are built from the scenario format's fields, or are those or the examples with
keys dropped, values of the wrong type, numbers at and beyond the limits of :mod:`rtl.layouts`,
names and choices changed, windows and send buffers made to overlap, processes declared twice
and keys added. A planned scenario is then
set up on behavioural nodes as the system testbench sets it up (:class:`behavioral.workload.
Workload`: address spaces, endpoints, rings, threads) and each distinct send is composed, so a
check missing from the planner shows up here as an exception, not in a simulation.

Run with ``-s`` to see how many documents were tried. The hypothesis seed is the session's
(``--seed``, printed in the header); no example database is written.
"""

import copy
import datetime
import time
import tomllib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, event, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from behavioral.core import MmioWrite, SMTCore
from behavioral.memory import MemoryHierarchy
from behavioral.os import OS
from behavioral.scenario import NOTIFY, OS_COSTS, PATTERNS, SENDS, SYSTEM_PARAMS, ScenarioError
from behavioral.vm import RING_VA_BASE, AddressSpaces, NiDriver
from behavioral.workload import Workload
from rtl import components
from rtl.layouts import (ASID_BITS, ENDPOINT_BITS, FLIT_BYTES, KEY_BITS, LINE_BYTES, MAX_NODES,
                         MAX_PAYLOAD_BYTES, NODE_BITS, PAGE_BITS, VA_BITS)
from tb import cli

EXAMPLES = {path.name: tomllib.loads(path.read_text())
            for path in sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))}
#: Documents tried by one run: about 30 s on a shared 2-core machine.
MAX_EXAMPLES = 800
#: Distinct sends composed per planned scenario (a stream's messages differ by little).
MAX_SENDS = 200

_LIMITS = (FLIT_BYTES, LINE_BYTES, 1 << PAGE_BITS, MAX_PAYLOAD_BYTES, MAX_NODES,
           1 << NODE_BITS, 1 << ENDPOINT_BITS, 1 << KEY_BITS, 1 << ASID_BITS, 1 << VA_BITS,
           RING_VA_BASE)
#: Numbers at and beside every limit of the formats, and a few beyond any.
NUMBERS = sorted({-1, 0, 1, 2, 3, 1 << 20, 1 << 30, 1 << 32, 1 << 64,
                  *(limit + step for limit in _LIMITS for step in (-FLIT_BYTES, -1, 0, 1))})
#: A count that is valid plans that many messages (a second each 250,000): keep it small.
COUNTS = (-1, 0, 1, 2, 3, 17, 1_000_001, 1 << 64)
WRONG_TYPES = ("x", "", 1.5, True, False, [], [1], {}, {"colour": 1},
               datetime.date(2026, 1, 1))
NAMES = ("a", "b", "c", "client", "server")


# Documents built from the format's fields -----------------------------------------------------

@st.composite
def _process(draw, index, name, nodes):
    entry = {"name": name, "node": draw(st.integers(0, nodes - 1)), "endpoint": index,
             "window": {"va": draw(st.sampled_from([0, 0x1000_0000, 0x4000_0000])),
                        "bytes": draw(st.sampled_from([64, 4096, 65536]))}}
    if draw(st.booleans()):
        entry["window"]["key"] = draw(st.integers(0, (1 << KEY_BITS) - 1))
    if not draw(st.integers(0, 9)):
        entry["endpoint"] = draw(st.integers(0, 3))
    if draw(st.booleans()):
        entry["notify"] = draw(st.sampled_from(sorted(NOTIFY)))
    if draw(st.booleans()):
        entry["send_buffer"] = {"va": 0x3000_0000, "bytes": draw(st.sampled_from([64, 8192]))}
    if draw(st.booleans()):
        entry["work"] = draw(st.integers(0, 1000))
    return entry


def _sizes():
    return st.sampled_from([0, FLIT_BYTES, LINE_BYTES, MAX_PAYLOAD_BYTES])


@st.composite
def _message(draw, names):
    message = {"from": draw(st.sampled_from(names)), "to": draw(st.sampled_from(names)),
               "bytes": draw(_sizes())}
    optional = {"send": st.sampled_from(SENDS), "notify": st.booleans(),
                "va_offset": st.sampled_from([0, LINE_BYTES, 1 << PAGE_BITS]),
                "key": st.integers(0, (1 << KEY_BITS) - 1),
                "length": st.integers(0, MAX_PAYLOAD_BYTES + FLIT_BYTES),
                "dst_node": st.integers(0, (1 << NODE_BITS) - 1), "flags": st.integers(0, 255),
                "local_va": st.sampled_from([0x3000_0000, RING_VA_BASE]),
                "endpoint": st.integers(0, (1 << ENDPOINT_BITS) - 1)}
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=2, unique=True)):
        message[name] = draw(optional[name])
    return message


@st.composite
def _traffic(draw, names):
    pattern = draw(st.sampled_from(PATTERNS))
    entry = {"pattern": pattern}
    if pattern == "list":
        entry["messages"] = draw(st.lists(_message(names), max_size=3))
    else:
        pair = draw(st.permutations(names))
        if pattern != "random" or draw(st.booleans()):
            entry["from"], entry["to"] = pair[:2]
        entry["bytes"] = draw(_sizes())
        entry["count"] = draw(st.integers(1, 5))
    if draw(st.booleans()):
        entry["send"] = draw(st.sampled_from(SENDS))
    return entry


@st.composite
def built(draw):
    """A document made of the format's sections and keys, with values that make sense."""
    nodes = draw(st.integers(2, 4))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=2, max_size=4, unique=True))
    params = draw(st.dictionaries(st.sampled_from(SYSTEM_PARAMS),
                                  st.integers(1, 2) | st.integers(1, 16), max_size=2))
    costs = draw(st.dictionaries(st.sampled_from(OS_COSTS), st.integers(1, 5000), max_size=2))
    return {"system": {"nodes": nodes, "params": params, "os": costs},
            "process": [draw(_process(index, name, nodes)) for index, name in enumerate(names)],
            "traffic": draw(st.lists(_traffic(names), max_size=3))}


# Mutations --------------------------------------------------------------------------------------

def _paths(node, path=()):
    """Every (path, value) in ``node``, a path being the keys and indices leading to it."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _at(document, path):
    for step in path:
        document = document[step]
    return document


def _mutate(draw, document):
    """Apply one mutation to ``document`` in place; return its name."""
    paths = [path for path, _ in _paths(document) if path]
    kind = draw(st.sampled_from(["drop", "type", "number", "name", "overlap", "duplicate",
                                 "extra"]))
    if kind == "drop":
        path = draw(st.sampled_from(paths))
        del _at(document, path[:-1])[path[-1]]
    elif kind == "type":
        path = draw(st.sampled_from(paths))
        _at(document, path[:-1])[path[-1]] = copy.deepcopy(draw(st.sampled_from(WRONG_TYPES)))
    elif kind == "number":
        numbers = [path for path in paths if isinstance(_at(document, path), int)]
        if numbers:
            path = draw(st.sampled_from(numbers))
            choices = COUNTS if path[-1] == "count" else NUMBERS
            _at(document, path[:-1])[path[-1]] = draw(st.sampled_from(choices))
    elif kind == "name":
        strings = [path for path in paths if isinstance(_at(document, path), str)]
        if strings:
            path = draw(st.sampled_from(strings))
            name = _at(document, path)
            _at(document, path[:-1])[path[-1]] = draw(st.sampled_from(
                ["nobody", name.upper(), [name], {"name": name}]))
    elif kind in ("overlap", "duplicate"):
        processes = document.get("process")
        if isinstance(processes, list) and processes:
            index = draw(st.integers(0, len(processes) - 1))
            process = processes[index]
            if kind == "duplicate":
                processes.append(copy.deepcopy(process))
            elif isinstance(process, dict) and isinstance(process.get("window"), dict):
                va, size = process["window"].get("va", 0), process["window"].get("bytes", 64)
                if type(va) is int:
                    va += draw(st.sampled_from([0, LINE_BYTES, (1 << PAGE_BITS) - LINE_BYTES]))
                process["send_buffer"] = {"va": va, "bytes": size}
    else:
        tables = [path for path in [(), *paths] if isinstance(_at(document, path), dict)]
        table = _at(document, draw(st.sampled_from(tables)))
        table[draw(st.sampled_from(["colour", "nodes", "name", "bytes"]))] = 1
    return kind


@st.composite
def mutated(draw):
    """An example, or a document :func:`built`, with one to three mutations."""
    document = draw(st.one_of(st.sampled_from(sorted(EXAMPLES)).map(
        lambda name: copy.deepcopy(EXAMPLES[name])), built()))
    kinds = [_mutate(draw, document) for _ in range(draw(st.integers(1, 3)))]
    event(f"mutated: {'+'.join(sorted(set(kinds)))}")
    # A new object: hypothesis then prints a failing document as it is, not as it was drawn.
    return copy.deepcopy(document)


# The property ---------------------------------------------------------------------------------

def _tokens(document):
    """What an error may quote from ``document``: its keys and its values as the errors print
    them."""
    tokens = set()
    for path, value in _paths(document):
        tokens.update(str(step) for step in path if isinstance(step, str))
        if isinstance(value, str):
            tokens.add(value)
        if isinstance(value, int) and not isinstance(value, bool):
            tokens.update((str(value), hex(value)))
        elif not isinstance(value, (dict, list)) or not value:
            tokens.add(repr(value))
    return {token for token in tokens if token}


def _check_error(document, error):
    text = str(error)
    assert "\n" not in text and text, repr(text)
    assert text.startswith(("the scenario", "[system", "[[process]]", "process ",
                            "[[traffic]]")), text
    missing = text.endswith("is missing")
    assert missing or any(token in text for token in _tokens(document)), text


class _Port:
    """The NI's ``os`` port: takes the driver's commands."""

    def command(self, **fields):
        pass


def _set_up(scenario):
    """Set ``scenario`` up on behavioural nodes as :class:`tb.system_tb.SystemTB` does (without
    the TLB prefill, a command a page, past 16 MiB of windows), and compose its distinct sends;
    return the number composed."""
    params = {**components.parameters("system"), **scenario.params}
    os_params = {k: v for k, v in scenario.os.items() if k != "miss_cycles"}
    nodes = {}
    for index in range(scenario.nodes):
        core = SMTCore(contexts=params["contexts"])
        spaces = AddressSpaces(asid_bits=params["asid_bits"])
        driver = NiDriver(_Port(), spaces, later=core.after, endpoints=params["endpoints"],
                          contexts=params["contexts"],
                          miss_cycles=scenario.os.get("miss_cycles", 1000))
        nodes[index] = SimpleNamespace(core=core, os=OS(core, **os_params), spaces=spaces,
                                       driver=driver,
                                       hierarchy=MemoryHierarchy(**scenario.memory))
    small = sum(p.window.bytes + p.send_buffer.bytes for p in scenario.processes.values())
    workload = Workload(scenario, nodes, tlb_prefill=small <= 1 << 24)
    sends = {}
    for message in scenario.messages:
        sends.setdefault((message.src, message.dst, message.bytes, message.send,
                          message.va_offset, message.key, message.length, message.dst_node,
                          message.flags, message.local_va, message.endpoint), message)
    composed = list(sends.values())[:MAX_SENDS]
    for message in composed:
        # The workload's own send, up to its first MMIO write: the descriptor is packed by then.
        steps = workload._send(workload.processes[message.src], message)
        op = next(steps)
        while not isinstance(op, MmioWrite):       # a DMA send stores its payload first
            op = steps.send(None)
    return len(composed)


def _one(document, counts):
    counts["tried"] += 1
    try:
        scenario = cli.plan(document, seed=1)
    except ScenarioError as error:
        _check_error(document, error)
        counts["refused"] += 1
        event(f"refused: {str(error).split(':')[0].split(' ')[0]}")
        return
    counts["planned"] += 1
    counts["sends composed"] += _set_up(scenario)
    event("planned")


def test_every_document_is_refused_in_one_line_or_plans_and_sets_up(seed):
    counts = Counter()
    run = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])(
        hypothesis_seed(seed)(given(st.one_of(built(), mutated()))(
            lambda document: _one(document, counts))))
    start = time.monotonic()
    run()
    print(f"scenario fuzz: {counts['tried']} documents in {time.monotonic() - start:.1f} s: "
          f"{counts['refused']} refused, {counts['planned']} planned and set up "
          f"({counts['sends composed']} sends composed); hypothesis seed {seed}")
    assert counts["refused"] and counts["planned"]


def test_the_examples_plan_and_set_up():
    for name, document in EXAMPLES.items():
        assert _set_up(cli.plan(document, seed=1)), name
