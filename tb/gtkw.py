"""GTKWave views: the save file (``.gtkw``) written beside every waveform of a testbench run.

``gtkwave run-sim/fabric.gtkw`` opens the waveform with the top-level component's ports laid out
in groups: one per stream interface (``inputs__0``: the payload's struct fields, or the payload
when it has none, then ``valid``, then ``ready``), then the clock and reset, the counters
(``count_*``, closed) and any other port. Named markers (A, B, ...) can mark moments of the run,
such as a message's cycle stamps (``smtni run`` and ``smtni demo`` mark the first messages').

Names
-----
The ports are those the component's Verilog declares; the names are those GTKWave gives the
dumped signals, under the top module's scope (the component's name). A VCD is read for them: a
port the file does not hold is left out. Of an FST, for want of a reader here, the names follow
from the Verilog by each simulator's rule: Icarus keeps the backslash of an escaped identifier
(``fabric.\\inputs__0__payload.data``, a struct field's view), Verilator drops it.
"""

import math
import re
from pathlib import Path

from vcd.gtkw import GTKWSave

from .waves import Waves

__all__ = ["write_view", "port_groups", "TICKS_PER_NS", "STAMPS"]

#: Waveform time steps per ns (cycle): the runner's time precision is 1 ps.
TICKS_PER_NS = 1000
#: A message's cycle stamps (:mod:`tb.system_tb`) in the order they happen.
STAMPS = ("t_doorbell", "t_first_flit", "t_last_flit_out", "t_first_flit_in", "t_last_flit_in",
          "t_completion", "t_notified", "t_handler")
_MARKERS = "abcdefghijklmnopqrstuvwxyz"
#: Up to this many stream interfaces, their groups start open; more start closed.
_OPEN_STREAMS = 8
_STREAM_ENDS = ("__payload", "__valid", "__ready")
_PORT = re.compile(r"^\s*(?:input|output|inout)\s+(\[[^\]]*\])?\s*(\\?\S+)\s*;", re.MULTILINE)
_WIRE = re.compile(r"^\s*(?:wire|reg)\s+(\[[^\]]*\])?\s*(\\\S+)\s*(?:=[^;]*)?;", re.MULTILINE)


def write_view(wave, *, component, verilog, sim, markers=()):
    """Write the GTKWave save file of the waveform ``wave`` beside it; return its path.

    Parameters
    ----------
    wave : Path
        The VCD or FST file of a run of ``component``.
    component : str
        The top module's name.
    verilog : Path
        The Verilog the simulator built, which declares the ports.
    sim : str
        The simulator that wrote ``wave`` (how an FST names escaped identifiers).
    markers : sequence of (str, int)
        Named markers as ``(name, cycle)``, at most 26; more are left out.
    """
    wave = Path(wave)
    ports, fields, ranges = _declared(Path(verilog).read_text(), component)
    names = _dumped_names(wave, component, ranges, sim)
    view = wave.with_suffix(".gtkw")
    with open(view, "w") as file:
        save = GTKWSave(file)
        save.comment(f"GTKWave view of {wave.name}: the ports of {component} by interface")
        save.dumpfile(str(wave))
        save.savefile(str(view))
        save.treeopen(component)
        marked = list(markers)[:len(_MARKERS)]
        for letter, (label, when) in zip(_MARKERS, marked):
            save.comment(f"marker {letter.upper()}: {label} (cycle {when})")
        save.zoom_markers(zoom=_zoom(wave, marked), **{letter: when * TICKS_PER_NS
                             for letter, (_, when) in zip(_MARKERS, marked)})
        for title, closed, members in port_groups(ports, fields):
            traced = [names[member] for member in members if member in names]
            if not traced:
                continue
            with save.group(title, closed=closed):
                for name in traced:
                    save.trace(name, datafmt="hex")
    return view


def port_groups(ports, fields=()):
    """Group ``ports`` for display; return ``[(title, closed, members)]`` in display order.

    A stream interface ``m`` (ports ``m__payload``, ``m__valid``, ``m__ready``) is one group
    titled ``m``, closed when there are more than eight: the payload's struct fields (those of
    ``fields`` named ``m__payload.*``, in their order) or else the payload, then ``valid``, then
    ``ready``. Then ``clk`` and ``rst``, the counters (``count_*``, closed) and the other ports,
    each kind in a group of its own.
    """
    streams = {}
    for port in ports:
        for end in _STREAM_ENDS:
            if port.endswith(end):
                streams.setdefault(port.removesuffix(end), {})[end] = port
    streams = {member: ends for member, ends in streams.items()
               if "__valid" in ends and "__ready" in ends}
    groups = []
    for member, ends in streams.items():
        payload = ends.get("__payload")
        inner = [field for field in fields if payload and field.startswith(payload + ".")]
        body = inner or ([payload] if payload else [])
        groups.append((member, len(streams) > _OPEN_STREAMS,
                       body + [ends["__valid"], ends["__ready"]]))
    grouped = {port for ends in streams.values() for port in ends.values()}
    rest = [port for port in ports if port not in grouped]
    clock = [port for port in rest if port in ("clk", "rst")]
    counters = [port for port in rest if port.startswith("count_")]
    other = [port for port in rest if port not in clock and port not in counters]
    groups += [("clock and reset", False, clock), ("counters", True, counters),
               ("other ports", False, other)]
    return [group for group in groups if group[2]]


def _zoom(wave, markers):
    """GTKWave's zoom (a power of 2; at 0 a time step is about 200 pixels wide) that shows about
    the whole of a VCD, or the markers of an FST, in a window some 800 pixels wide."""
    if wave.suffix == ".vcd":
        end = Waves(wave).end_time
    else:
        end = max((when for _, when in markers), default=0) + 10
    return math.log2(4 / max(1, end * TICKS_PER_NS))


def _declared(text, component):
    """Return the ports of module ``component`` in ``text``, its struct field views (wires
    named ``port.field``), each without a Verilog escape's backslash, in declaration order, and
    ``{name: range}`` of both (``"[63:0]"``, or ``""`` for a bit)."""
    start = text.find(f"module {component}(")
    if start < 0:
        raise ValueError(f"the Verilog declares no module {component!r}")
    body = text[start:text.index("endmodule", start)]
    ports = {name.lstrip("\\"): bits for bits, name in _PORT.findall(body)}
    fields = {name.lstrip("\\"): bits for bits, name in _WIRE.findall(body)
              if name.lstrip("\\").split(".")[0] in ports}
    return list(ports), list(fields), {**ports, **fields}


def _dumped_names(wave, component, ranges, sim):
    """Map each signal of ``ranges`` that ``wave`` holds to the name GTKWave gives it."""
    if wave.suffix == ".vcd":
        dumped = Waves(wave)
        held = set(dumped.signals)
        return {signal: dumped.declared_name(f"{component}.{signal}") for signal in ranges
                if f"{component}.{signal}" in held}
    escape = "\\" if sim == "icarus" else ""
    return {signal: f"{component}.{escape if '.' in signal else ''}{signal}{bits}"
            for signal, bits in ranges.items()}
