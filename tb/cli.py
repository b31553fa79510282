"""smtni: generate Verilog, run testbenches, inspect waveforms, run the demo, plot runs, synthesize.

Exit status: 0 on success, 1 when a simulation or a synthesis tool fails, 2 on bad input (one line
on stderr).
"""

import argparse
import functools
import json
import random
import sys
import tomllib
from pathlib import Path

from behavioral import scenario as scenario_module
from rtl import components
from rtl.layouts import FLIT_BYTES, HEADER_FLITS, TRAILER_FLITS

from . import experiments as experiments_module, fusesoc, gtkw, runner, soak as soak_module, synth
from .testbenches import TESTBENCHES, get_testbench

__all__ = ["main", "plan"]


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
        width = max(len(name) for name in components.COMPONENTS)
        for name in sorted(components.COMPONENTS):
            defaults = ", ".join(f"{k}={v}" for k, v in components.parameters(name).items())
            print(f"{name:{width}} {defaults}".rstrip())
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
    if args.fusesoc:
        print(fusesoc.write_core(args.component, path))
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
    build = runner.build(bench.component, rtl_params, sim=sim, waves=waves)
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
    if result.view:
        print(f"GTKWave view: {result.view}")


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


# run and demo --------------------------------------------------------------------------------

def _load_scenario(path, seed):
    """Return ``(document, Scenario)`` of the TOML file ``path``; bad input is a UsageError."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise UsageError(f"cannot read scenario {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"scenario {path} is not valid TOML: {error}") from None
    try:
        return document, plan(document, seed=seed)
    except scenario_module.ScenarioError as error:
        raise UsageError(f"scenario {path}: {error}") from None


def plan(document, *, seed):
    """Return the :class:`behavioral.scenario.Scenario` of ``document`` checked against the
    System it would build: what ``smtni run`` does before it builds anything.

    Raises
    ------
    :exc:`behavioral.scenario.ScenarioError`
        One line naming the bad entry and value.
    """
    return scenario_module.parse(document, seed=seed, system=_system_parameters)


def _system_parameters(params):
    """Return every parameter of the System that ``params`` build, defaults filled in; raise
    :exc:`ValueError` as building it would."""
    checked, error = _check_system(tuple(sorted(params.items())))
    if error is not None:
        raise ValueError(error)
    return dict(checked)


@functools.lru_cache(maxsize=256)
def _check_system(items):
    """The System's check of the parameters ``items``: ``(params, None)`` or ``(None, error)``.
    Remembered, for it makes every NI (a tenth of a second a node)."""
    params = {**components.parameters("system"), **dict(items)}
    try:
        components.check("system", params)
    except (TypeError, ValueError) as error:
        return None, str(error)
    return params, None


def _system_params(scenario):
    params = {"nodes": scenario.nodes, **scenario.params}
    _check("system", params)
    return params


def _run_scenario(document, scenario, *, sim, seed, waves, label, options=None):
    """Run ``scenario`` on the RTL system; return ``(result, records, summary)``."""
    build = runner.build("system", _system_params(scenario), sim=sim, waves=waves)
    result = runner.run(build, get_testbench("system").module, seed=seed, waves=waves,
                        options={"scenario": document, **(options or {})}, label=label)
    figures = result.results.get("scenario", {})
    if result.view:
        gtkw.write_view(result.waves, component="system", sim=sim, markers=stamp_markers(
            figures.get("messages", [])), verilog=build.directory / "system.v")
    return result, figures.get("messages", []), figures.get("summary", {}), \
        figures.get("first_mismatches", [])


def stamp_markers(records):
    """Return GTKWave markers ``(label, cycle)`` for the stamps of the first messages of
    ``records``, message by message, each message's in the order they happen."""
    return [(f"message {record['id']} {stamp}", record[stamp]) for record in records
            for stamp in gtkw.STAMPS if stamp in record]


def cmd_run(args):
    seed = random.randrange(1 << 31) if args.seed is None else args.seed
    document, scenario = _load_scenario(args.scenario, seed)
    if args.plot:
        _check_png(args.plot, "--plot")
    print(f"{args.scenario}: {len(scenario.processes)} processes on {scenario.nodes} nodes, "
          f"{len(scenario.messages)} messages, on {args.sim}, seed {seed} "
          f"(replay with --seed {seed})", flush=True)
    result, records, summary, mismatches = _run_scenario(
        document, scenario, sim=args.sim, seed=seed, waves=args.waves, label="run",
        options={"lockstep": int(args.lockstep)})
    _print_latencies(records)
    _print_links(records, summary.get("links", {}))
    if summary:
        print(f"delivered {summary['delivered']}, errors {summary['errors'] or 'none'}, "
              f"{summary['mismatches']} mismatches; {summary['cycles']} cycles in "
              f"{summary['wall_s']} s ({summary['cycles_per_s']} cycles/s)")
    for text in mismatches:
        print(f"  mismatch: {text}")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps({"messages": records, "summary": summary},
                                                  indent=1) + "\n")
        except OSError as error:
            raise UsageError(f"cannot write --json {args.json}: {error.strerror}") from None
    if args.plot and records:
        print(f"timeline: {_plot_timeline(records, args.plot, source=args.scenario)}")
    _print_summary(result)
    return 0 if result.passed and summary.get("mismatches", 1) == 0 else 1


def _latency(record, start, end):
    if start in record and end in record:
        return record[end] - record[start]
    return None


def _stats(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return "-"
    return f"{values[0]} / {values[len(values) // 2]} / {values[-1]}"


def _print_latencies(records):
    """Per (mode, send, bytes): one-way and notification latency, min / median / max."""
    groups = {}
    for record in records:
        groups.setdefault((record["notify"], record["send"], record["bytes"]), []).append(record)
    if not groups:
        return
    header = ("notify", "send", "bytes", "msgs", "one-way (doorbell->handler)",
              "notification (last flit->handler)")
    rows = [(notify, send, size, len(group),
             _stats(_latency(r, "t_doorbell", "t_handler") for r in group),
             _stats(_latency(r, "t_last_flit_in", "t_handler") for r in group))
            for (notify, send, size), group in sorted(groups.items())]
    _print_table(header, rows)
    print("(cycles, min / median / max)")


def message_flits(size):
    """The flits of a message of ``size`` payload bytes: header, payload, trailer."""
    return HEADER_FLITS + size // FLIT_BYTES + TRAILER_FLITS


def link_rates(record):
    """Return a message's flits per cycle on the link out of its sender's NI (first to last flit)
    and on the link into its receiver's NI, as fractions of the link's rate (1 flit a cycle);
    None where a stamp is missing."""
    flits = message_flits(record["bytes"])
    rates = []
    for first, last in (("t_first_flit", "t_last_flit_out"), ("t_first_flit_in", "t_last_flit_in")):
        span = _latency(record, first, last)
        rates.append(None if span is None else flits / (span + 1))
    return tuple(rates)


def _share(value):
    return "-" if value is None else f"{100 * value:.1f} %"


def _print_links(records, links):
    """Per (send, bytes): each message's rate on the links out and in, min and median; per node
    that received: the share of the flits the Fabric offered that its NI took at once."""
    groups = {}
    for record in records:
        groups.setdefault((record["send"], record["bytes"]), []).append(link_rates(record))
    if not groups:
        return
    rows = []
    for (send, size), rates in sorted(groups.items()):
        outs = sorted(out for out, _ in rates if out is not None)
        ins = sorted(into for _, into in rates if into is not None)
        rows.append((send, size, message_flits(size), len(rates),
                     f"{_share(outs[0] if outs else None)} / {_share(_median(outs))}",
                     f"{_share(ins[0] if ins else None)} / {_share(_median(ins))}"))
    _print_table(("send", "bytes", "flits", "msgs", "out of sender (min / median)",
                  "into receiver (min / median)"), rows)
    print("(each message's flits per cycle, first to last flit, as a share of the link's rate)")
    for node, link in sorted(links.items(), key=lambda item: int(item[0])):
        offered = link["in_flits"] + link["in_held"]
        if link["in_flits"]:
            print(f"node {node}: took {link['in_flits']} flits in {offered} cycles offered "
                  f"({_share(link['in_flits'] / offered)} at once; held {link['in_held']})")


def _median(values):
    """The median of ``values`` as :func:`_stats` gives it (None if there are none)."""
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def _demo_verdicts(medians, size):
    """Return a line per DESIGN target: the demo's medians against it, met or not."""
    notified = [medians[mode, send] for mode in HARDWARE_MODES for send in ("pio", "dma")]

    def verdict(name, values, target, what):
        if None in values:
            return f"{name}: no figure ({what})"
        low, high = min(values), max(values)
        figure = f"{low}" if low == high else f"{low} to {high}"
        return (f"{name}: median {figure} cycles ({what}): "
                f"{'met' if high <= target else 'NOT met'} (target <= {target})")

    lines = [verdict("notification", [n for _, n in notified], DEMO_TARGETS["notification"],
                     f"{size} B, lock, branch and spawn, PIO and DMA")]
    if size == 8:
        lines.append(verdict("one way", [medians[mode, "pio"][0] for mode in HARDWARE_MODES],
                             DEMO_TARGETS["one_way"], "8 B PIO, lock, branch and spawn"))
    else:
        lines.append("one way: the target is for 8 B messages (run with --bytes 8)")
    return lines


def _print_table(header, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))


#: The demo: 2 nodes playing ping-pong, one run per notification mode and send method.
DEMO_MODES = ("none", "lock", "branch", "spawn", "interrupt")
#: The demo's modes the DESIGN's notification targets are for (the NI's own mechanisms).
HARDWARE_MODES = ("lock", "branch", "spawn")
DEMO_TARGETS = {"one_way": 30, "notification": 10}


def demo_scenario(mode, send, *, count, size=8):
    """Return the demo's scenario document for one notification ``mode`` and ``send``."""
    window = {"va": 0x1000_0000, "bytes": 65536}
    return {
        "system": {"nodes": 2},
        "process": [
            {"name": "client", "node": 0, "notify": mode, "window": {**window, "key": 0x4321}},
            {"name": "server", "node": 1, "notify": mode, "window": {**window, "key": 0x1234}},
        ],
        "traffic": [{"pattern": "pingpong", "from": "client", "to": "server", "bytes": size,
                     "send": send, "count": count}],
    }


def cmd_demo(args):
    seed = random.randrange(1 << 31) if args.seed is None else args.seed
    print(f"smtni demo: 2 nodes, ping-pong of {args.bytes} B messages, {args.count} round trips "
          f"per mode, on {args.sim}, seed {seed} (replay with --seed {seed})", flush=True)
    rows, failed, waves, medians = [], [], [], {}
    for mode in DEMO_MODES:
        for send in ("pio", "dma"):
            document = demo_scenario(mode, send, count=args.count, size=args.bytes)
            scenario = scenario_module.parse(document, seed=seed)
            result, records, summary, mismatches = _run_scenario(
                document, scenario, sim=args.sim, seed=seed, waves=args.waves,
                label=f"demo-{mode}-{send}")
            if not result.passed or summary.get("mismatches", 1):
                failed.append(f"{mode}/{send}: {result.message or mismatches[:1]}; "
                              f"log {result.log}")
            if result.waves:
                waves.append(f"{mode}/{send}: {result.waves}")
            # The first round trip warms caches and TLBs; the median is over the rest.
            steady = records[2:] or records
            one_way = [_latency(r, "t_doorbell", "t_handler") for r in steady]
            notification = [_latency(r, "t_last_flit_in", "t_handler") for r in steady]
            medians[mode, send] = (_median(one_way), _median(notification))
            rows.append((mode, send, len(records), _stats(one_way), _stats(notification),
                         summary.get("cycles_per_s", "-")))
    print()
    _print_table(("notify", "send", "msgs", "one-way doorbell->handler",
                  "notification last flit->handler", "cycles/s"), rows)
    print(f"\ncycles, min / median / max over the messages after the first round trip.\n"
          f"DESIGN targets: one way <= {DEMO_TARGETS['one_way']} cycles (8 B PIO, full link "
          f"rate); notification <= {DEMO_TARGETS['notification']} cycles (lock, branch, spawn "
          f"on a free context). 'none' is polling: its notification is the poll that saw the "
          f"entry. 'interrupt' is the baseline: the OS's kernel interrupt path through the "
          f"node's caches, then the handler.")
    print("\n".join(_demo_verdicts(medians, args.bytes)))
    print("waveforms:\n  " + "\n  ".join(waves) if waves else
          "waveforms: none (add --waves)")
    for text in failed:
        print(f"FAIL {text}")
    return 1 if failed else 0


# plot ----------------------------------------------------------------------------------------

def cmd_plot(args):
    records = _load_records(args.run)
    output = args.output or str(Path(args.run).with_suffix(".png"))
    _check_png(output, "--output")
    print(_plot_timeline(records, output, source=args.run, messages=args.messages))
    return 0


def _load_records(path):
    """Return the per-message records of the file ``smtni run --json`` wrote at ``path``; bad
    input is a UsageError."""
    again = "give the file that 'smtni run SCENARIO --json OUT' writes"
    try:
        document = json.loads(Path(path).read_bytes())
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:         # (not JSON, or not text)
        raise UsageError(f"{path} is not JSON ({error}); {again}") from None
    records = document.get("messages") if isinstance(document, dict) else None
    if not isinstance(records, list) or not all(
            isinstance(record, dict) and {"id", "from", "to", "notify"} <= record.keys()
            for record in records):
        raise UsageError(f"{path} has no per-message records (a 'messages' list of records with "
                         f"'from', 'to', 'notify' and cycle stamps); {again}")
    if not records:
        raise UsageError(f"{path} records no message: its run had no traffic, nothing to draw")
    return records


def _check_png(path, option):
    """Refuse, before any work, a PNG ``path`` that could not be written."""
    if Path(path).suffix.lower() != ".png":
        raise UsageError(f"{option} {path}: the picture is a PNG; give a name ending in .png")
    if not Path(path).parent.is_dir():
        raise UsageError(f"{option} {path}: folder {Path(path).parent} does not exist; create "
                         f"it or choose another")


#: Messages whose bars a timeline draws unless told otherwise: enough to see a pattern, few
#: enough for a bar of a short message to stay visible.
TIMELINE_MESSAGES = 40


def _plot_timeline(records, path, *, source, messages=TIMELINE_MESSAGES):
    """Draw the timeline of ``records`` into ``path``; return a line saying what it shows."""
    from .experiments import plots

    try:
        drawn = plots.timeline(records, path, messages=messages,
                               title=f"{source}: {len(records)} messages")
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from None
    modes = ", ".join(f"{mode} {count}" for mode, count in drawn.histogram.items())
    return (f"{path}: the stages of the first {drawn.messages} messages; latencies of "
            f"{sum(drawn.histogram.values())} ({modes or 'no handler reached'})")


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


def _positive(text):
    try:
        if int(text) > 0:
            return int(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")


def _payload_bytes(text):
    try:
        value = int(text)
        if 0 <= value <= 2048 and value % 8 == 0:
            return value
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a payload size: a multiple of 8 from 0 "
                                     f"to 2048")


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
                                  description="Write DIR/COMPONENT.v (and with --fusesoc "
                                  "DIR/COMPONENT.core).")
    verilog.add_argument("component", nargs="?", help="component name (see --list)")
    verilog.add_argument("--list", action="store_true", help="list components and parameters")
    verilog.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                         help="elaboration parameter (repeatable)")
    verilog.add_argument("--nodes", type=int, help="shorthand for --param nodes=N")
    verilog.add_argument("--fusesoc", action="store_true",
                         help="also write DIR/COMPONENT.core, a FuseSoC core with lint and sim "
                              "targets")
    verilog.add_argument("-o", "--output", default=str(runner.SIM_BUILD / "verilog"),
                         metavar="DIR", help="output folder (default: sim_build/verilog)")
    verilog.set_defaults(func=cmd_verilog)

    sim = commands.add_parser("sim", help="run a component's cocotb testbench",
                              description="Run a cocotb testbench: "
                              + "; ".join(f"{k}: {v.summary}" for k, v in TESTBENCHES.items()))
    sim.add_argument("testbench", help=f"one of {', '.join(sorted(TESTBENCHES))}")
    _add_sim_options(sim)
    _add_waves_option(sim, "write a waveform and its GTKWave view")
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

    run = commands.add_parser("run", help="run a scenario on the RTL system",
                              description="Run a scenario file (see examples/) on n nodes: the "
                              "RTL NIs and Fabric with the behavioural cores, scored against "
                              "the reference NI. Exit status 1 on any mismatch.")
    run.add_argument("scenario", help="scenario file (TOML)")
    _add_sim_options(run)
    _add_waves_option(run, "write a waveform and its GTKWave view, the first messages' stamps "
                           "marked")
    run.add_argument("--json", metavar="OUT", help="write the per-message records and summary")
    run.add_argument("--plot", metavar="PNG",
                     help="also draw the messages' timeline (as 'smtni plot' does)")
    run.add_argument("--lockstep", action="store_true",
                     help="step every core at every cycle (slow; must give the same records)")
    run.set_defaults(func=cmd_run)

    demo = commands.add_parser("demo", help="2-node ping-pong in every notification mode: "
                               "latency table")
    _add_sim_options(demo)
    _add_waves_option(demo, "write a waveform and its GTKWave view per run")
    demo.add_argument("--count", type=_positive, default=8,
                      help="round trips per mode (default 8)")
    demo.add_argument("--bytes", type=_payload_bytes, default=8,
                      help="message payload in bytes (default 8, the size DESIGN's one-way "
                           "target is for)")
    demo.set_defaults(func=cmd_demo)

    plot = commands.add_parser(
        "plot", help="draw a run's messages: a bar per message, stage by stage; latency "
        "histograms per notification mode",
        description="Draw the per-message records that 'smtni run SCENARIO --json RUN.json' "
                    "wrote: the first messages by doorbell as bars from doorbell to handler, "
                    "a colour per stage, a row per sender and receiver; beside them, over every "
                    "message, a histogram per notification mode of last flit in to handler.")
    plot.add_argument("run", metavar="RUN.json", help="the file 'smtni run --json' wrote")
    plot.add_argument("-o", "--output", metavar="PNG",
                      help="the picture to write (default: RUN.png beside RUN.json)")
    plot.add_argument("--messages", type=_positive, default=TIMELINE_MESSAGES, metavar="N",
                      help=f"draw the bars of the first N messages by doorbell (default: "
                           f"{TIMELINE_MESSAGES}); the histogram counts them all")
    plot.set_defaults(func=cmd_plot)

    soak = commands.add_parser("soak", help="random N-node runs with injected link faults, "
                               "scored; many seeds side by side",
                               description=soak_module.__doc__.splitlines()[0])
    _add_sim_options(soak)
    soak.add_argument("--nodes", type=int, default=4, help="nodes, 2 to 8 (default 4)")
    soak.add_argument("--messages", type=_positive, default=500,
                      help="random messages per seed (default 500)")
    soak.add_argument("--seeds", type=_positive, default=1,
                      help="run this many seeds, from --seed on (default 1)")
    soak.add_argument("--workers", type=_positive, default=2,
                      help="seeds run side by side (Dask workers; default 2)")
    soak.add_argument("--fault-rate", type=float, default=0.05, metavar="R",
                      help="chance per message of a link fault, 0 to 1 (default 0.05)")
    soak.add_argument("--json", metavar="OUT", help="write the summary and every seed's figures")
    soak.set_defaults(func=lambda args: soak_module.command(args, UsageError))

    experiment = commands.add_parser(
        "experiment", help="run an experiment's sweep on Dask: points.csv, summary.md, plots",
        description="Run an experiment's points on the RTL, side by side on Dask, and write "
                    "DIR/NAME/points.csv, summary.md and PNG plots; points already in "
                    "points.csv for the same parameters and seed are not run again.")
    experiment.add_argument("name", nargs="?", help="the experiment (see --list)")
    experiment.add_argument("--list", action="store_true", help="list the experiments")
    size = experiment.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="full", action="store_false",
                      help="a few points, for a first look (default)")
    size.add_argument("--full", dest="full", action="store_true", help="the whole space")
    experiment.add_argument("--sim", choices=runner.SIMULATORS, default="verilator",
                            help="simulator (default: verilator)")
    experiment.add_argument("--seed", type=int,
                            help=f"random seed of every point (default: "
                                 f"{experiments_module.DEFAULT_SEED})")
    experiment.add_argument("--workers", type=_positive,
                            help="local Dask worker processes (default: the number of cores)")
    experiment.add_argument("--scheduler", metavar="ADDRESS",
                            help="run on the Dask cluster of this scheduler (tcp://HOST:PORT)")
    experiment.add_argument("-o", "--out", default="results", metavar="DIR",
                            help="output folder (default: results)")
    experiment.set_defaults(full=False,
                            func=lambda args: experiments_module.command(args, UsageError))

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


def _add_waves_option(parser, text):
    parser.add_argument("--waves", nargs="?", const="vcd", choices=runner.WAVE_FORMATS,
                        help=f"{text}: VCD (the default) or FST")


def _add_sim_options(parser):
    parser.add_argument("--sim", choices=runner.SIMULATORS, default="verilator",
                        help="simulator (default: verilator)")
    parser.add_argument("--seed", type=int, help="random seed (default: a new one, printed)")


def _bare_waves(argv):
    """Return ``argv`` with each ``--waves`` not followed by a format written ``--waves=vcd``, so
    that the argument after it (``smtni run --waves scenario.toml``) is not taken as its value."""
    return [f"--waves={runner.WAVE_FORMATS[0]}"
            if arg == "--waves" and argv[index + 1:index + 2] not in
            [[name] for name in runner.WAVE_FORMATS] else arg
            for index, arg in enumerate(argv)]


def main(argv=None):
    try:
        args = _parser().parse_args(_bare_waves(sys.argv[1:] if argv is None else list(argv)))
        return args.func(args)
    except UsageError as error:
        print(f"smtni: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:       # a simulator build or a synthesis tool failed
        print(f"smtni: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
