"""smtni: generate Verilog, run testbenches, inspect waveforms, run the demo, synthesize.

Exit status: 0 on success, 1 when a simulation or a synthesis tool fails, 2 on bad input (one line
on stderr).
"""

import argparse
import json
import random
import sys
from pathlib import Path

from rtl import components

from . import runner, synth
from .testbenches import TESTBENCHES, get_testbench

__all__ = ["main"]


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def parse_params(pairs, known):
    """Return ``{name: value}`` from ``NAME=VALUE`` strings, typed after the defaults in ``known``.

    Raises
    ------
    UsageError
        If a pair is malformed, a name unknown or a value not of its parameter's type.
    """
    params = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param {pair!r} is not NAME=VALUE")
        if name not in known:
            raise UsageError(f"unknown parameter {name!r}; known: "
                             f"{', '.join(f'{k}={v}' for k, v in known.items())}")
        default = known[name]
        try:
            if isinstance(default, bool):
                value = {"1": True, "true": True, "0": False, "false": False}[text.lower()]
            else:
                value = int(text, 0)
        except (KeyError, ValueError):
            kind = "true or false" if isinstance(default, bool) else "an integer"
            raise UsageError(f"parameter {name}={text!r}: the value must be {kind}") from None
        params[name] = value
    return params


def _component_params(name, pairs):
    try:
        known = components.parameters(name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return parse_params(pairs, known)


def _check(name, params):
    try:
        components.check(name, params)
    except (TypeError, ValueError) as error:
        raise UsageError(f"{name}: {error}") from None


# verilog -------------------------------------------------------------------------------------

def cmd_verilog(args):
    if args.list:
        for name in sorted(components.COMPONENTS):
            defaults = ", ".join(f"{k}={v}" for k, v in components.parameters(name).items())
            print(f"{name:10} {defaults}")
        return 0
    if args.component is None:
        raise UsageError("name a component, or use --list to see them")
    pairs = list(args.param)
    if args.nodes is not None:
        pairs.append(f"nodes={args.nodes}")
    params = _component_params(args.component, pairs)
    _check(args.component, params)
    path = runner.write_verilog(args.component, params, Path(args.output) / f"{args.component}.v")
    print(path)
    return 0


# sim -----------------------------------------------------------------------------------------

def _run_testbench(name, *, sim, seed, waves, pairs, only=None, verbose=False):
    try:
        bench = get_testbench(name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    rtl_known = components.parameters(bench.component)
    rtl_params = parse_params([p for p in pairs if p.partition("=")[0] in rtl_known], rtl_known)
    options = parse_params([p for p in pairs if p.partition("=")[0] not in rtl_known],
                           {**bench.options, **rtl_known})
    _check(bench.component, rtl_params)
    seed = random.randrange(1 << 31) if seed is None else seed
    print(f"{name} on {sim}, seed {seed} (replay with --seed {seed})", flush=True)
    build = runner.build(bench.component, rtl_params, sim=sim)
    return runner.run(build, bench.module, seed=seed, waves=waves, options=options,
                      only=only, echo=verbose)


def _print_summary(result):
    for test, status in result.tests.items():
        print(f"  {status}  {test}")
    for test, figures in result.results.items():
        if "cycles_per_s" in figures:
            print(f"  {test}: {figures['cycles']} cycles at {figures['cycles_per_s']} cycles/s")
    if result.message:
        print(f"  {result.message}")
    verdict = "PASS" if result.passed else "FAIL"
    passed = sum(status == "PASS" for status in result.tests.values())
    print(f"{verdict}: {passed} passed, {len(result.tests) - passed} failed; log {result.log}")
    print(f"waveform: {result.waves}" if result.waves else "waveform: none (add --waves)")


def cmd_sim(args):
    result = _run_testbench(args.testbench, sim=args.sim, seed=args.seed, waves=args.waves,
                            pairs=args.param, only=args.test, verbose=args.verbose)
    _print_summary(result)
    return 0 if result.passed else 1


# waves ---------------------------------------------------------------------------------------

def cmd_waves(args):
    from .waves import Waves, WavesError
    try:
        waves = Waves(args.file)
        if not args.signals:
            if args.png:
                raise UsageError("--png needs --signals to choose what to draw")
            print("\n".join(waves.signals))
            return 0
        signals = waves.select(args.signals)
        if args.png:
            print(waves.plot(signals, args.png, start=args.start, end=args.end))
        else:
            print(waves.table(signals, start=args.start, end=args.end))
    except WavesError as error:
        raise UsageError(str(error)) from None
    return 0


# demo ----------------------------------------------------------------------------------------

DEMO_TEST = "random_traffic/backpressure=True"


def cmd_demo(args):
    pairs = [f"nodes={args.nodes}", f"messages={args.messages}"]
    result = _run_testbench("fabric", sim=args.sim, seed=args.seed, waves=not args.no_waves,
                            pairs=pairs, only=DEMO_TEST)
    figures = next(iter(result.results.values()), None)
    if figures is not None:
        _print_demo_table(figures)
    _print_summary(result)
    return 0 if result.passed else 1


def _print_demo_table(figures):
    cycles = figures["cycles"]
    print(f"\nFabric, {figures['nodes']} nodes, link latency {figures['link_latency']} cycles, "
          f"1 flit per {figures['cycles_per_flit']} cycle(s); random traffic with bubbles "
          f"and backpressure on {figures['sim']}\n")
    header = ("node", "msgs sent", "flits sent", "msgs received", "flits received",
              "flits/cycle received", "worst head wait (cycles)")
    rows = [(p["port"], p["messages_in"], p["flits_in"], p["messages_out"], p["flits_out"],
             f"{p['throughput_flits_per_cycle']:.3f}", p["worst_wait_cycles"])
            for p in figures["ports"]]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
    flits = sum(p["flits_out"] for p in figures["ports"])
    print(f"\n{figures['messages']} messages ({figures['dropped']} to nodes that do not exist, "
          f"dropped and counted), {flits} flits delivered in {cycles} cycles, "
          f"{figures['mismatches']} scoreboard mismatches; "
          f"simulated at {figures['cycles_per_s']} cycles/s\n")


# synth ---------------------------------------------------------------------------------------

def cmd_synth(args):
    params = _component_params(args.component, args.param)
    _check(args.component, params)
    result = synth.synthesize(args.component, params, device=args.device, freq_mhz=args.freq)
    _print_synth_report(result)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        except OSError as error:
            raise UsageError(f"cannot write --json {args.json}: {error.strerror}") from None
    return 0


def _print_synth_report(result):
    params = ", ".join(f"{k}={v}" for k, v in result["params"].items())
    lut_cell = synth.DEVICES[result["device"]].lut_cell
    fmax, target = result["fmax_mhz"], result["target_mhz"]
    print(f"{result['component']} ({params}) on {result['device']}")
    print(f"  LUTs        {result['luts']:>7}  ({lut_cell})")
    print(f"  FFs         {result['ffs']:>7}")
    print(f"  RAM blocks  {result['ram_blocks']:>7}  (and {result['lut_rams']} LUT RAMs)")
    if fmax is None:
        print("  Fmax           none  (no register-to-register path)")
    else:
        verdict = "met" if fmax >= target else "missed"
        print(f"  Fmax        {fmax:>7.1f}  MHz (target {target:g} MHz: {verdict})")
    print(f"Yosys {result['yosys_s']:.1f} s, nextpnr {result['nextpnr_s']:.1f} s; "
          f"logs in {result['workdir']}")


def _mhz(text):
    try:
        if float(text) > 0:
            return float(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a positive frequency in MHz")


# main ----------------------------------------------------------------------------------------

def _parser():
    parser = _Parser(prog="smtni", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    verilog = commands.add_parser("verilog", help="write a component's Verilog",
                                  description="Write DIR/COMPONENT.v.")
    verilog.add_argument("component", nargs="?", help="component name (see --list)")
    verilog.add_argument("--list", action="store_true", help="list components and parameters")
    verilog.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                         help="elaboration parameter (repeatable)")
    verilog.add_argument("--nodes", type=int, help="shorthand for --param nodes=N")
    verilog.add_argument("-o", "--output", default=str(runner.SIM_BUILD / "verilog"),
                         metavar="DIR", help="output folder (default: sim_build/verilog)")
    verilog.set_defaults(func=cmd_verilog)

    sim = commands.add_parser("sim", help="run a component's cocotb testbench",
                              description="Run a cocotb testbench: "
                              + "; ".join(f"{k}: {v.summary}" for k, v in TESTBENCHES.items()))
    sim.add_argument("testbench", help=f"one of {', '.join(sorted(TESTBENCHES))}")
    _add_sim_options(sim)
    sim.add_argument("--waves", action="store_true", help="write a VCD waveform")
    sim.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="component parameter or testbench knob (repeatable)")
    sim.add_argument("--test", metavar="NAME", help="run only the tests whose name contains NAME")
    sim.add_argument("-v", "--verbose", action="store_true", help="show the simulator's output")
    sim.set_defaults(func=cmd_sim)

    waves = commands.add_parser("waves", help="list, tabulate or draw a VCD waveform",
                                description="Without --signals, list the signals of FILE. "
                                "Times are in ns, which is clock cycles.")
    waves.add_argument("file", help="VCD file")
    waves.add_argument("--signals", nargs="+", metavar="PATTERN",
                       help="signals to show: glob, leaf name or substring")
    waves.add_argument("--start", type=float, metavar="T", help="window start (ns)")
    waves.add_argument("--end", type=float, metavar="T", help="window end (ns)")
    waves.add_argument("--png", metavar="OUT.png", help="draw a timing diagram instead")
    waves.set_defaults(func=cmd_waves)

    demo = commands.add_parser("demo", help="run the Fabric under random traffic and print a table")
    _add_sim_options(demo)
    demo.add_argument("--nodes", type=int, default=4, help="number of nodes (default 4)")
    demo.add_argument("--messages", type=int, default=200, help="messages per node (default 200)")
    demo.add_argument("--no-waves", action="store_true", help="do not write a waveform")
    demo.set_defaults(func=cmd_demo)

    synthesis = commands.add_parser("synth", help="synthesize a component: LUTs, FFs, RAMs, Fmax",
                                 description="Synthesize with Yosys, place and route with "
                                 "nextpnr, and report the resources and the Fmax of clk.")
    synthesis.add_argument("component", help=f"one of {', '.join(sorted(components.COMPONENTS))}")
    synthesis.add_argument("--device", choices=synth.DEVICES, default="ecp5-25k",
                        help="FPGA (default: ecp5-25k)")
    synthesis.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="elaboration parameter (repeatable)")
    synthesis.add_argument("--freq", type=_mhz, metavar="MHZ",
                        help=f"target frequency in MHz (default: {synth.DEFAULT_FREQ_MHZ})")
    synthesis.add_argument("--json", metavar="OUT", help="also write the figures to OUT as JSON")
    synthesis.set_defaults(func=cmd_synth)
    return parser


def _add_sim_options(parser):
    parser.add_argument("--sim", choices=runner.SIMULATORS, default="verilator",
                        help="simulator (default: verilator)")
    parser.add_argument("--seed", type=int, help="random seed (default: a new one, printed)")


def main(argv=None):
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except UsageError as error:
        print(f"smtni: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:       # a simulator build or a synthesis tool failed
        print(f"smtni: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
