"""Scenarios: the system, its processes and their traffic, as a user writes them in TOML.

A scenario file (``smtni run SCENARIO.toml``; examples in ``examples/``)::

    [system]
    nodes = 2
    [system.params]            # any parameter of rtl.ni.System by name
    send_buffering = 4
    [system.tune]              # what the OS tunes in every NI at boot (TUNE), up to the params
    send_buffering = 2

    [[process]]
    name = "server"
    node = 1
    endpoint = 0
    notify = "lock"            # none | lock | branch | spawn | interrupt
    window = { va = 0x10000000, bytes = 65536, key = 0x1234 }

    [[traffic]]
    pattern = "pingpong"       # pingpong | stream | random | list
    from = "client"
    to = "server"
    bytes = 64
    send = "pio"               # pio | dma
    count = 100

    [[traffic]]
    pattern = "list"
    messages = [{ from = "client", to = "server", bytes = 8, va_offset = 0, key = 0x9999 }]

    [[compute]]                # a thread that computes in a loop, sharing node 0's core
    node = 0
    instructions = 64          # per turn of its loop
    lines = 0                  # its working set: a line of it loaded per turn (0: none)

Patterns
    ``pingpong``: ``count`` round trips; ``from`` sends, ``to`` answers each message once it has
    consumed it, ``from`` sends the next once it has consumed the answer. ``stream``: ``count``
    messages from ``from`` to ``to``, each sent once the one before has left. ``random``:
    ``count`` messages between processes drawn with the run's seed (``from`` and ``to`` narrow
    the choice; a process never sends to itself). ``list``: the messages given, each with
    ``from``, ``to``, ``bytes`` and optionally ``send``, ``va_offset``, ``key`` (to make bad
    ones) and ``notify``. Every traffic entry may set ``send`` (default ``pio``) and ``notify``
    (default true: the header asks for the receiver's armed mode), and for DMA ``payload``: where
    the payload's lines are when the send starts: ``cache`` (default: the sender stores each
    word, so its lines are dirty in its caches), ``dram`` (in DRAM alone, put there before the
    send at no cost to the sender) or ``mixed`` (the send buffer's even lines in DRAM, its odd
    ones stored); and ``gap``: instructions the sender computes before starting each send (0
    by default), which sets a stream's rate.

Landing addresses
    Unless a message gives ``va_offset``, messages to a process land one after another in its
    window (each at the next 64-byte boundary, or the next multiple of the traffic entry's
    ``align``: a power of two from 8 to 4096 bytes), wrapping to the window's start when the next
    one does not fit. The sender's process may also be given ``send_buffer = { va = ..., bytes = ...
    }`` for DMA sends (default: 8 KiB at 0x20000000), readable by the NI but not remotely
    writable.

Processes and the OS
    A process may set ``work``: instructions it computes after consuming each message (a slow
    consumer, to fill its completion ring) and ``ring``: the entries of its completion ring (a
    power of two, default 16). ``[system.os]`` sets the OS's costs in cycles:
    ``switch_cycles``, ``deliver_cycles``, ``spawn_cycles``, ``tick_cycles`` (the scheduler's
    preemption tick) and ``miss_cycles`` (an NI TLB miss answered by the OS).
    ``[system.tune]`` sets what the OS tunes in every NI at boot (:data:`TUNABLES`):
    ``send_buffering``, the DMA lines the TX engine fetches ahead, 1 to the System's
    ``send_buffering`` (what it was built with); ``cycles_per_flit``, the rate of every link
    into a node, 1 to the System's ``max_cycles_per_flit`` (a System built with one).
    ``[system.memory]`` sets every node's caches (:data:`MEMORY`, the parameters of
    :class:`behavioral.memory.MemoryHierarchy`; DESIGN's node by default: 32 KiB L1, 1 MiB L2).

Limits
    Every limit is the one the run would meet, from where it is defined: the formats of
    :mod:`rtl.layouts` (message sizes, keys, node and endpoint numbers, the descriptor fields a
    bad send may set), the System's parameter checks (:func:`parse`'s ``system``), a node's memory
    and ASIDs (:class:`behavioral.vm.AddressSpaces`) and the workload's thread numbering and rings
    (:mod:`behavioral.workload`). So a scenario that ``smtni run`` plans (:func:`parse` with the
    System's check) sets up without an error, and one it refuses fails when the file is read,
    before anything is built.

Every error is a :exc:`ScenarioError`: one line naming the entry and the bad value.
"""

import functools
import random
from dataclasses import dataclass, field

from rtl.layouts import (ASID_BITS, COMPLETION_BYTES, ENDPOINT_BITS, FLIT_BYTES, KEY_BITS,
                         LINE_BYTES, MAX_NODES, MAX_PAYLOAD_BYTES, THREAD_BITS, VA_BITS,
                         NiTunable, NotifyMode, SendDescriptor)

from .memory import MemoryHierarchy
from .vm import PAGE_BYTES, RING_VA_BASE, AddressSpaces
from .workload import MAIN_THREAD_BASE, RING_ENTRIES, SPAWN_THREAD_BASE

#: The largest completion ring a process may ask for (``ring``): 32 KiB of entries.
MAX_RING_ENTRIES = 1024

__all__ = ["ScenarioError", "Window", "Process", "PlannedMessage", "Scenario", "parse",
           "PATTERNS", "SENDS", "PAYLOADS", "COMPUTE_INSTRUCTIONS", "TUNABLES"]

PATTERNS = ("pingpong", "stream", "random", "list")
SENDS = ("pio", "dma")
#: Where a DMA payload's lines are when its send starts (``payload``).
PAYLOADS = ("cache", "dram", "mixed")
NOTIFY = {mode.name.lower(): mode for mode in NotifyMode}
_DEFAULT_SEND_BUFFER = {"va": 0x2000_0000, "bytes": 8192}
#: What ``[system.params]`` may set: the parameters of :class:`rtl.ni.System` but ``nodes``.
SYSTEM_PARAMS = ("link_latency", "cycles_per_flit", "max_cycles_per_flit", "link_faults",
                 "endpoints", "contexts", "tlb_entries", "asid_bits", "lines", "tx_lines",
                 "rx_lines", "merges",
                 "lock_entries", "lock_waiters", "lock_count_bits", "send_buffering",
                 "queue_depth")
#: What ``[system.os]`` may set.
OS_COSTS = ("switch_cycles", "deliver_cycles", "spawn_cycles", "tick_cycles", "miss_cycles")
#: What ``[system.memory]`` may set: every node's :class:`behavioral.memory.MemoryHierarchy`.
MEMORY = ("l1_bytes", "l1_ways", "l1_hit_cycles", "l2_bytes", "l2_ways", "l2_hit_cycles",
          "dram_latency_ns")
#: What ``[system.tune]`` may set: the NI's tunables (:class:`rtl.layouts.NiTunable`), each from 1
#: up to the System's parameter named here.
TUNABLES = {"send_buffering": "send_buffering", "cycles_per_flit": "max_cycles_per_flit"}
assert set(TUNABLES) == {member.name.lower() for member in NiTunable}
#: The fields a list message may set to make a bad send, and the largest value of each: what
#: its descriptor field (or, for the sending endpoint, an NI page number) holds.
_BAD_SEND_FIELDS = {**{name: (1 << SendDescriptor[name].width) - 1
                       for name in ("length", "dst_node", "flags", "local_va")},
                    "endpoint": (1 << ENDPOINT_BITS) - 1}
#: The workload numbers process ``i``'s threads MAIN_THREAD_BASE + i and SPAWN_THREAD_BASE + i,
#: in THREAD_BITS: this many processes keep the two ranges apart and in the field.
_MAX_PROCESSES = min(SPAWN_THREAD_BASE - MAIN_THREAD_BASE, (1 << THREAD_BITS) - SPAWN_THREAD_BASE)
_HEX = ("va", "key", "va_offset", "local_va")
#: Instructions a compute thread computes per turn of its loop unless its entry says.
COMPUTE_INSTRUCTIONS = 64
#: The most lines a compute thread's working set may have (16 MiB).
COMPUTE_MAX_LINES = 1 << 18


class ScenarioError(ValueError):
    """A scenario that cannot run; the message names the entry and the bad value."""


@dataclass(frozen=True)
class Window:
    """A range of a process's virtual memory."""
    va: int
    bytes: int
    key: int = 0


@dataclass
class Process:
    """One receiving and sending process: one thread, one endpoint, one window."""
    name: str
    node: int
    endpoint: int
    notify: NotifyMode
    window: Window
    send_buffer: Window
    work: int = 0
    ring: int = RING_ENTRIES


@dataclass
class PlannedMessage:
    """One message of the traffic. ``after`` is the id of a message the sender must have
    consumed before it sends this one (ping-pong), or None."""
    id: int
    src: str
    dst: str
    bytes: int
    send: str
    notify: bool
    va_offset: int
    key: int
    after: int = None
    #: Landing places of messages without ``va_offset`` are multiples of this (bytes).
    align: int = LINE_BYTES
    #: Where a DMA payload's lines are when the send starts (:data:`PAYLOADS`).
    payload: str = "cache"
    #: Instructions the sender computes before it starts the send (sets a stream's rate).
    gap: int = 0
    #: Set to make a bad send: see the module docstring (None: the usual value).
    length: int = None
    dst_node: int = None
    flags: int = 0
    local_va: int = None
    endpoint: int = None

    def payload_word(self, index):
        """Return word ``index`` of the payload: distinct for every message and word."""
        return ((self.id + 1) << 40 | index << 8 | 0xA5) & ((1 << 64) - 1)


@dataclass
class Scenario:
    nodes: int
    params: dict
    processes: dict
    messages: list = field(default_factory=list)
    os: dict = field(default_factory=dict)
    #: Tunable name (:data:`TUNABLES`) -> the value the OS sets in every NI at boot.
    tune: dict = field(default_factory=dict)
    #: Every node's cache hierarchy: :class:`behavioral.memory.MemoryHierarchy` parameters.
    memory: dict = field(default_factory=dict)
    #: Node -> instructions per turn of the loop of its compute thread (``[[compute]]``).
    compute: dict = field(default_factory=dict)
    #: Node -> lines of its compute thread's working set, if it has one (``lines``).
    compute_lines: dict = field(default_factory=dict)

    def process(self, name):
        return self.processes[name]

    def program(self, name):
        """Return the steps of process ``name`` in order: ``("send", message)`` and
        ``("consume", message id)`` (wait until that message has been consumed)."""
        steps = []
        for message in self.messages:
            if message.src == name:
                if message.after is not None:
                    steps.append(("consume", message.after))
                steps.append(("send", message))
        return steps


def _int(where, name, value, low, high):
    if not isinstance(value, int) or isinstance(value, bool):
        raise ScenarioError(f"{where}: {name} = {value!r} must be an integer")
    if not low <= value <= high:
        raise ScenarioError(f"{where}: {name} = {value:#x} is out of range {low:#x}..{high:#x}"
                            if name in _HEX else
                            f"{where}: {name} = {value} is out of range {low}..{high}")
    return value


def _table(where, value, allowed, required=()):
    if not isinstance(value, dict):
        raise ScenarioError(f"{where} must be a table, not {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r}; allowed: "
                            f"{', '.join(allowed)}")
    for key in required:
        if key not in value:
            raise ScenarioError(f"{where}: {key!r} is missing")
    return value


def _choice(where, name, value, choices):
    if value not in choices:
        raise ScenarioError(f"{where}: {name} = {value!r}; choose one of {', '.join(choices)}")
    return value


def _window(where, value, *, keyed):
    allowed = ("va", "bytes", "key") if keyed else ("va", "bytes")
    _table(where, value, allowed, ("va", "bytes"))
    va = _int(where, "va", value["va"], 0, (1 << VA_BITS) - 1)
    size = _int(where, "bytes", value["bytes"], LINE_BYTES, RING_VA_BASE)
    if va % LINE_BYTES:
        raise ScenarioError(f"{where}: va = {va:#x} must be a multiple of {LINE_BYTES}")
    if va + size > RING_VA_BASE:
        raise ScenarioError(f"{where}: va {va:#x} + {size} bytes reaches {RING_VA_BASE:#x}, where "
                            f"the OS puts the completion rings; place it lower")
    key = _int(where, "key", value.get("key", 0), 0, (1 << KEY_BITS) - 1) if keyed else 0
    return Window(va, size, key)


def _pages(va, size):
    """Return the first and the last page number of ``va .. va + size - 1``."""
    return va // PAGE_BYTES, (va + size - 1) // PAGE_BYTES


def _page_count(va, size):
    """Return the number of pages ``va .. va + size - 1`` touches."""
    first, last = _pages(va, size)
    return last - first + 1


def _disjoint(where, window, send_buffer):
    """The window and the send buffer are mapped in one address space: no page in both."""
    first, last = _pages(window.va, window.bytes)
    other_first, other_last = _pages(send_buffer.va, send_buffer.bytes)
    if max(first, other_first) <= min(last, other_last):
        raise ScenarioError(
            f"{where}: window {window.va:#x} + {window.bytes} bytes and send_buffer "
            f"{send_buffer.va:#x} + {send_buffer.bytes} bytes share the page at "
            f"{max(first, other_first) * PAGE_BYTES:#x} of the process's address space; move "
            f"one of them (the send buffer's default is {_DEFAULT_SEND_BUFFER['va']:#x}, "
            f"{_DEFAULT_SEND_BUFFER['bytes']} bytes)")


@functools.cache
def _node_frames():
    """The frames the OS of a node can give its processes: those of a fresh
    :class:`behavioral.vm.AddressSpaces`, made as the system testbench makes them."""
    return AddressSpaces().free_frames


def _frames(process):
    """The frames the OS maps for ``process``: its window, its send buffer and its ring."""
    return (_page_count(process.window.va, process.window.bytes)
            + _page_count(process.send_buffer.va, process.send_buffer.bytes)
            + _page_count(RING_VA_BASE, process.ring * COMPLETION_BYTES))


def parse(document, *, seed=0, system=None):
    """Return the :class:`Scenario` of ``document`` (a dict, as :func:`tomllib.load` gives).

    Parameters
    ----------
    seed : int
        Draws the ``random`` pattern's pairs.
    system : callable or None
        ``system(params)`` returns every parameter of the :class:`rtl.ni.System` that ``params``
        (``nodes`` and what ``[system.params]`` sets) build, defaults filled in, or raises
        :exc:`TypeError` or :exc:`ValueError` naming a bad one: the System's own check, which
        ``smtni run`` passes (:func:`tb.cli.plan`), for this package imports no RTL. Without it
        (a scenario planned before, read again), only the formats' limits apply: as many
        endpoints as an endpoint number reaches, :data:`rtl.layouts.ASID_BITS` of ASID.

    Raises
    ------
    ScenarioError
        Naming the bad entry and value.
    """
    _table("the scenario", document, ("system", "process", "traffic", "compute"),
           ("process", "traffic"))
    nodes, params, limits, os_costs, tune, memory = _system(document.get("system", {}), system)
    scenario = Scenario(nodes=nodes, params=params, processes={}, os=os_costs, tune=tune,
                        memory=memory)
    if not isinstance(document["process"], list) or not document["process"]:
        raise ScenarioError("[[process]]: give at least one process")
    for index, entry in enumerate(document["process"]):
        _process(scenario, f"[[process]] #{index + 1}", entry, limits)
    if not isinstance(document["traffic"], list):
        raise ScenarioError("[[traffic]] must be an array of tables")
    rng = random.Random(seed)
    for index, entry in enumerate(document["traffic"]):
        _traffic(scenario, f"[[traffic]] #{index + 1}", entry, rng)
    if not isinstance(document.get("compute", []), list):
        raise ScenarioError("[[compute]] must be an array of tables")
    for index, entry in enumerate(document.get("compute", [])):
        _compute(scenario, f"[[compute]] #{index + 1}", entry, limits)
    _place(scenario)
    return scenario


def _system(table, system):
    """Return ``(nodes, params, limits, os_costs, tune, memory)`` of ``[system]``: ``limits``
    are the System's parameters (``system``'s answer) that bound the processes and the
    tunables."""
    table = _table("[system]", table, ("nodes", "params", "os", "tune", "memory"))
    nodes = _int("[system]", "nodes", table.get("nodes", 2), 2, MAX_NODES)
    params = _table("[system.params]", table.get("params", {}), SYSTEM_PARAMS)
    params = {name: _int("[system.params]", name, value, 0, 1 << 20)
              for name, value in params.items()}
    if system is None:
        limits = {"endpoints": 1 << ENDPOINT_BITS, "asid_bits": ASID_BITS, **params}
    else:
        try:
            limits = system({"nodes": nodes, **params})
        except (TypeError, ValueError) as error:
            given = "".join(f", {name} = {value}" for name, value in params.items())
            raise ScenarioError(f"[system.params]: {error} (the System of nodes = {nodes}"
                                f"{given}); change the value it names") from None
    os_costs = _table("[system.os]", table.get("os", {}), OS_COSTS)
    os_costs = {name: _int("[system.os]", name, value, 1 if name == "tick_cycles" else 0,
                           1 << 32) for name, value in os_costs.items()}
    tune = _table("[system.tune]", table.get("tune", {}), tuple(TUNABLES))
    for name in tune:
        if limits.get(TUNABLES[name]) == 0:
            raise ScenarioError(f"[system.tune]: {name} = {tune[name]}, but the System's rate is "
                                f"fixed; set [system.params] {TUNABLES[name]} to the slowest "
                                f"rate to tune to")
    # (a scenario read again without the System's check: up to the format's field)
    tune = {name: _int("[system.tune]", name, value, 1, limits.get(TUNABLES[name], 0xFFFF))
            for name, value in tune.items()}
    memory = _table("[system.memory]", table.get("memory", {}), MEMORY)
    try:
        MemoryHierarchy(**memory)
    except (TypeError, ValueError) as error:
        raise ScenarioError(f"[system.memory]: {error}") from None
    return nodes, params, limits, os_costs, tune, memory


def _process(scenario, where, entry, limits):
    """Add the process of ``entry`` to ``scenario``, if its node has room for it."""
    _table(where, entry, ("name", "node", "endpoint", "notify", "window", "send_buffer",
                          "work", "ring"), ("name", "node", "window"))
    name = entry["name"]
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}: name = {name!r} must be a non-empty string")
    where = f"process {name!r}"
    if name in scenario.processes:
        raise ScenarioError(f"{where} is declared twice")
    if len(scenario.processes) == _MAX_PROCESSES:
        raise ScenarioError(f"{where}: a scenario has at most {_MAX_PROCESSES} processes (the "
                            f"workload's thread numbers); declare fewer")
    node = _int(where, "node", entry["node"], 0, scenario.nodes - 1)
    neighbours = [other for other in scenario.processes.values() if other.node == node]
    _room(where, node, len(neighbours) + 1, limits)
    process = Process(
        name=name, node=node,
        endpoint=_int(where, "endpoint", entry.get("endpoint", 0), 0, limits["endpoints"] - 1),
        notify=NOTIFY[_choice(where, "notify", entry.get("notify", "none"), tuple(NOTIFY))],
        window=_window(f"{where} window", entry["window"], keyed=True),
        send_buffer=_window(f"{where} send_buffer",
                            entry.get("send_buffer", _DEFAULT_SEND_BUFFER), keyed=False),
        work=_int(where, "work", entry.get("work", 0), 0, 1 << 20),
        ring=_int(where, "ring", entry.get("ring", RING_ENTRIES), 1, MAX_RING_ENTRIES))
    if process.ring & (process.ring - 1):
        raise ScenarioError(f"{where}: ring = {process.ring} must be a power of two (entries of "
                            f"its completion ring, 1 to {MAX_RING_ENTRIES})")
    _disjoint(where, process.window, process.send_buffer)
    _fits(where, process, neighbours)
    scenario.processes[name] = process


def _compute(scenario, where, entry, limits):
    """Add the compute thread of ``entry`` to ``scenario``: one per node, with an ASID."""
    _table(where, entry, ("node", "instructions", "lines"), ("node",))
    node = _int(where, "node", entry["node"], 0, scenario.nodes - 1)
    if node in scenario.compute:
        raise ScenarioError(f"{where}: node {node} has a compute thread already; give one per "
                            f"node")
    asids = (1 << limits["asid_bits"]) - 1
    processes = sum(1 for process in scenario.processes.values() if process.node == node)
    if processes + 1 > asids:
        raise ScenarioError(f"{where}: node {node} has {processes} processes and no ASID left "
                            f"of asid_bits = {limits['asid_bits']} for the compute thread; raise "
                            f"[system.params] asid_bits or put it on another node")
    scenario.compute[node] = _int(where, "instructions",
                                  entry.get("instructions", COMPUTE_INSTRUCTIONS), 1, 1 << 20)
    lines = _int(where, "lines", entry.get("lines", 0), 0, COMPUTE_MAX_LINES)
    if lines:
        scenario.compute_lines[node] = lines


def _room(where, node, count, limits):
    """Check that ``node`` has an endpoint and an ASID for each of ``count`` processes."""
    endpoints, asids = limits["endpoints"], (1 << limits["asid_bits"]) - 1
    if count > endpoints:
        raise ScenarioError(f"{where}: node {node} has {count} processes, more than its "
                            f"{endpoints} endpoints; raise [system.params] endpoints or move "
                            f"the process to another node")
    if count > asids:
        raise ScenarioError(f"{where}: node {node} has {count} processes, more than the {asids} "
                            f"ASIDs of asid_bits = {limits['asid_bits']}; raise "
                            f"[system.params] asid_bits or move the process to another node")


def _fits(where, process, neighbours):
    """Check that ``process`` fits on its node beside ``neighbours``: an endpoint of its own,
    and frames for everyone's pages."""
    node = process.node
    for other in neighbours:
        if other.endpoint == process.endpoint:
            raise ScenarioError(f"{where}: endpoint {process.endpoint} of node {node} is "
                                f"already process {other.name!r}'s; give it another endpoint")
    frames = sum(map(_frames, neighbours), _frames(process))
    if frames > _node_frames():
        raise ScenarioError(f"{where}: the processes of node {node} need {frames} pages of "
                            f"memory (windows, send buffers, rings), more than its "
                            f"{_node_frames()}; make the windows or send buffers smaller")


def _traffic(scenario, where, entry, rng):
    pattern = _choice(where, "pattern", _table(where, entry, (
        "pattern", "from", "to", "bytes", "send", "count", "notify", "messages", "align",
        "payload", "gap"),
        ("pattern",))["pattern"], PATTERNS)
    if pattern == "list":
        if "messages" not in entry or not isinstance(entry["messages"], list):
            raise ScenarioError(f"{where}: a list pattern needs messages = [ ... ]")
        for key in ("from", "to", "bytes", "count"):
            if key in entry:
                raise ScenarioError(f"{where}: {key} = {entry[key]!r} does nothing in a list "
                                    f"pattern; give from, to and bytes in each message")
        for number, message in enumerate(entry["messages"]):
            spot = f"{where} message #{number + 1}"
            _table(spot, message, ("from", "to", "bytes", "send", "va_offset", "key", "notify",
                                   *_BAD_SEND_FIELDS), ("from", "to", "bytes"))
            _add(scenario, spot, {**{k: entry[k] for k in ("send", "notify", "align", "payload",
                                                           "gap") if k in entry}, **message})
        return
    if "messages" in entry:
        raise ScenarioError(f"{where}: messages = [...] belongs to the list pattern")
    count = _int(where, "count", entry.get("count", 1), 1, 1_000_000)
    names = list(scenario.processes)
    for role in ("from", "to"):
        if role in entry:
            _known(scenario, where, role, entry[role])
    if pattern in ("pingpong", "stream"):
        for role in ("from", "to"):
            if role not in entry:
                raise ScenarioError(f"{where}: a {pattern} pattern needs {role!r}")
        if entry["from"] == entry["to"]:
            raise ScenarioError(f"{where}: from and to are both {entry['from']!r}")
    base = {k: entry[k] for k in ("bytes", "send", "notify", "align", "payload", "gap")
            if k in entry}
    if "bytes" not in base:
        raise ScenarioError(f"{where}: 'bytes' is missing")
    if pattern == "stream":
        for _ in range(count):
            _add(scenario, where, {**base, "from": entry["from"], "to": entry["to"]})
    elif pattern == "pingpong":
        previous = None
        for _ in range(count):
            for src, dst in ((entry["from"], entry["to"]), (entry["to"], entry["from"])):
                previous = _add(scenario, where, {**base, "from": src, "to": dst},
                                after=previous).id
    else:
        sources = [entry["from"]] if "from" in entry else names
        targets = [entry["to"]] if "to" in entry else names
        pairs = [(s, d) for s in sources for d in targets if s != d]
        if not pairs:
            raise ScenarioError(f"{where}: no pair of different processes to draw from")
        for _ in range(count):
            src, dst = rng.choice(pairs)
            _add(scenario, where, {**base, "from": src, "to": dst})


def _known(scenario, where, role, name):
    """Return ``name`` if it names a process of ``scenario``."""
    if not isinstance(name, str) or name not in scenario.processes:
        raise ScenarioError(f"{where}: {role} = {name!r} is no process; the processes are "
                            f"{', '.join(scenario.processes)}")
    return name


def _add(scenario, where, fields, after=None):
    for role in ("from", "to"):
        _known(scenario, where, role, fields[role])
    size = _int(where, "bytes", fields["bytes"], 0, MAX_PAYLOAD_BYTES)
    if size % FLIT_BYTES:
        raise ScenarioError(f"{where}: bytes = {size} must be a multiple of {FLIT_BYTES}")
    send = _choice(where, "send", fields.get("send", "pio"), SENDS)
    notify = fields.get("notify", True)
    if not isinstance(notify, bool):
        raise ScenarioError(f"{where}: notify = {notify!r} must be true or false")
    dst = scenario.processes[fields["to"]]
    va_offset = fields.get("va_offset")
    if va_offset is not None:
        _int(where, "va_offset", va_offset, 0, (1 << VA_BITS) - 1 - dst.window.va)
        if va_offset % FLIT_BYTES:
            raise ScenarioError(f"{where}: va_offset = {va_offset:#x} must be a multiple of "
                                f"{FLIT_BYTES}")
    elif size > dst.window.bytes:
        raise ScenarioError(f"{where}: bytes = {size} does not fit process {dst.name!r}'s "
                            f"window of {dst.window.bytes} bytes; send less or widen the window")
    send_buffer = scenario.processes[fields["from"]].send_buffer
    if send == "dma" and "local_va" not in fields and size > send_buffer.bytes:
        raise ScenarioError(f"{where}: a DMA send of {size} bytes does not fit process "
                            f"{fields['from']!r}'s send buffer of {send_buffer.bytes} bytes; "
                            f"send less or give it a larger send_buffer")
    key = _int(where, "key", fields.get("key", dst.window.key), 0, (1 << KEY_BITS) - 1)
    align = _int(where, "align", fields.get("align", LINE_BYTES), FLIT_BYTES, PAGE_BYTES)
    if align & (align - 1):
        raise ScenarioError(f"{where}: align = {align} must be a power of two, {FLIT_BYTES} to "
                            f"{PAGE_BYTES} bytes")
    payload = _choice(where, "payload", fields.get("payload", "cache"), PAYLOADS)
    if payload != "cache" and (send != "dma" or "local_va" in fields):
        raise ScenarioError(f"{where}: payload = {payload!r} places a DMA send's payload in its "
                            f"send buffer; it does nothing for this send")
    gap = _int(where, "gap", fields.get("gap", 0), 0, 1 << 24)
    bad = {name: _int(where, name, fields[name], 0, high)
           for name, high in _BAD_SEND_FIELDS.items() if name in fields}
    message = PlannedMessage(id=len(scenario.messages), src=fields["from"], dst=fields["to"],
                             bytes=size, send=send, notify=notify, va_offset=va_offset, key=key,
                             after=after, align=align, payload=payload, gap=gap, **bad)
    scenario.messages.append(message)
    return message


def _place(scenario):
    """Give each message without a ``va_offset`` the next place in its receiver's window."""
    cursor = dict.fromkeys(scenario.processes, 0)
    for message in scenario.messages:
        if message.va_offset is not None:
            continue
        window = scenario.processes[message.dst].window
        start = _round_up(cursor[message.dst], message.align)
        if start + message.bytes > window.bytes:
            start = 0
        message.va_offset = start
        cursor[message.dst] = start + _round_up(max(message.bytes, FLIT_BYTES), message.align)


def _round_up(value, step):
    return -(-value // step) * step

