"""Mutation testing of rtl/ with mutmut (``make mutants``): each RTL file mutated on its own and
run against its own fast unit tests (:data:`TESTS`), never the cocotb ones.

mutmut works in a copy of the checkout, ``results/mutants/work/<file>/``, so the checkout is
never touched. For each file this writes, in ``results/mutants/``:

* ``<file>.txt``: each mutant that no test killed, as a diff at the file's own line numbers,
  with the command that shows it again;
* ``<file>.json``: its counts; ``summary.md``: the table of every file run so far.

Not mutated: docstrings and module-level code (mutmut mutates function bodies only), ``raise``
lines (error messages; see :func:`_pyproject`), and signal names (a ``Signal``'s ``name=``, the
``name`` of rtl/onehot.py's helpers: what a waveform shows; such mutants are made, then marked
skipped before they run, see :class:`_Unnamed`).

After adding tests, ``--recheck FILE`` runs again only the mutants that no test killed.

A mutant is a timeout when its tests use more than twice their clean CPU time plus
``--timeout`` seconds. Randomized tests all run with one seed (``--seed``, printed), so a run
replays exactly.

The module is also the pytest plugin that the copies load (``-p tb.mutants``): it runs the
fastest tests first, so that a mutant dies on the quickest test that can kill it.
"""

import argparse
import ast
import copy
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

__all__ = ["TESTS", "main"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "mutants"

_CLI = "tests/test_cli.py::"
#: RTL file (its stem) -> the pytest arguments that select its fast unit tests; smallest first.
#: onehot and params have no tests of their own: they are run against the users' tests.
TESTS = {
    "framing": ["tests/test_framing.py"],
    "sendchecker": ["tests/test_sendchecker.py"],
    "fetcher": ["tests/test_fetcher.py"],
    "translator": ["tests/test_translator.py"],
    "receiver": ["tests/test_receiver.py"],
    "packetqueue": ["tests/test_packetqueue.py"],
    "writer": ["tests/test_writer.py"],
    "osport": ["tests/test_osport.py"],
    "mmio": ["tests/test_mmio.py"],
    "faults": ["tests/test_faults.py"],
    "onehot": ["tests/test_locktable.py", "tests/test_notifier.py", "tests/test_msgbuf.py"],
    "arbiter": ["tests/test_arbiter.py"],
    "layouts": ["tests/test_layouts.py"],
    "params": ["tests/test_arbiter.py", "tests/test_locktable.py", "tests/test_notifier.py",
               "tests/test_rxengine.py::test_parameter_errors_name_the_parameter",
               "tests/test_rxengine.py::test_parameters_are_kept",
               "tests/test_rxengine.py::"
               "test_node_number_comes_in_on_a_strap_port_when_not_built_in_and_defaults"],
    "components": [f"{_CLI}test_verilog_list",
                   f"{_CLI}test_verilog_writes_file_with_nodes_shorthand",
                   f"{_CLI}test_bad_input_is_one_line_and_status_2",
                   f"{_CLI}test_components_refuse_an_unknown_parameter_naming_the_known_ones",
                   f"{_CLI}test_component_verilog_has_no_source_paths_and_the_system_one_ni_module",
                   "tests/test_verilog_quality.py::test_every_listed_component_is_checked"],
    "tlb": ["tests/test_tlb.py"],
    "locktable": ["tests/test_locktable.py"],
    "notifier": ["tests/test_notifier.py"],
    "fabric": ["tests/test_fabric.py"],
    "msgbuf": ["tests/test_msgbuf.py"],
    "rxengine": ["tests/test_rxengine.py"],
    "txengine": ["tests/test_txengine.py"],
    "ni": ["tests/test_ni.py"],
}

#: What the copies hold: the packages and the tests (mutmut copies them on into its mutants/).
_COPIED = ("rtl", "tb", "behavioral", "tests")

#: mutmut's exit codes of a mutant's run -> the column it is counted in.
_COLUMN = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
           34: "excluded", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
           255: "timeout", -9: "timeout", None: "not run"}
_COLUMNS = ("mutants", "killed", "survived", "timeout", "no tests", "other", "not run",
            "excluded")
_UNKILLED = ("survived", "no tests", "other")
_SKIPPED = 34


def pytest_collection_modifyitems(items):
    """Run the fastest tests first, by their clean durations in mutmut's statistics (in the
    copy's ``mutants/``, pytest's working directory there; elsewhere nothing changes)."""
    try:
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


def _toml(table):
    # JSON's strings, numbers, booleans and lists are TOML's too.
    return [f"{key} = {json.dumps(value)}" for key, value in table.items()]


def _pyproject(stem, timeout_s):
    """Return the copy's pyproject.toml: the project's pytest options and mutmut's for ``stem``.

    mutmut's limit is ``(clean + timeout_constant) * timeout_multiplier * 2`` CPU seconds."""
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    mutmut = {
        "source_paths": ["rtl/"],
        "only_mutate": [f"rtl/{stem}.py"],
        "also_copy": ["tb/", "behavioral/"],
        "pytest_add_cli_args_test_selection": TESTS[stem],
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "tb.mutants"],
        # A line, not a node: whatever starts on a raise line is its error message.
        "do_not_mutate_patterns": [r"^\s*raise\b"],
        "timeout_multiplier": 1.0,
        "timeout_constant": timeout_s / 2,
        "use_git_change_detection": False,
    }
    return "\n".join(["[tool.pytest.ini_options]", *_toml(pytest_options["ini_options"]), "",
                      "[tool.mutmut]", *_toml(mutmut), ""])


def _prepare(work, stem, timeout_s, resume):
    """Make ``work`` a copy of the checkout configured for ``stem`` (keeping mutmut's results
    there if ``resume``)."""
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
    for name in _COPIED:
        shutil.copytree(ROOT / name, work / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (work / "pyproject.toml").write_text(_pyproject(stem, timeout_s))


def _naming_arguments():
    """Return ``{callee: position of its argument name}``: ``Signal`` (whose ``name`` is a
    keyword) and the helpers of rtl/onehot.py, whose ``name`` only names the signals they make."""
    positions = {"Signal": None}
    for node in ast.parse((ROOT / "rtl" / "onehot.py").read_text()).body:
        if isinstance(node, ast.FunctionDef):
            names = [argument.arg for argument in node.args.args]
            if "name" in names:
                positions[node.name] = names.index("name")
    return positions


class _Unnamed(ast.NodeTransformer):
    """Blank the signal names in calls of :func:`_naming_arguments`: what only shows in waveforms
    (other calls' ``name``, a Verilog module's say, stays)."""

    def __init__(self):
        self._positions = _naming_arguments()

    def visit_Call(self, node):
        self.generic_visit(node)
        callee = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if callee == "like":       # Signal.like(other, name=...)
            callee = getattr(node.func.value, "id", None)
        if callee not in self._positions:
            return node
        node.keywords = [keyword for keyword in node.keywords if keyword.arg != "name"]
        position = self._positions[callee]
        # Blanked, not dropped: a mutant that drops the argument is not the original.
        if position is not None and position < len(node.args):
            node.args[position] = ast.Constant("<name>")
        return node


def _mutated_functions(stem, work):
    """Return ``{mangled name: {"orig" or number: function node}}`` and the source lines of the
    copy's mutated ``rtl/<stem>.py``."""
    source = (work / "mutants" / "rtl" / f"{stem}.py").read_text()
    functions = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
            mangled, _, variant = node.name.partition("__mutmut_")
            functions.setdefault(mangled, {})[variant] = node
    return functions, source.splitlines()


def _cosmetic(stem, work):
    """Mark skipped each mutant of ``stem``, not run or survived, that differs from its original
    only in the names :class:`_Unnamed` blanks; return how many."""
    meta_path = work / "mutants" / "rtl" / f"{stem}.py.meta"
    meta = json.loads(meta_path.read_text())
    functions, _ = _mutated_functions(stem, work)

    def normal(function):
        function = _Unnamed().visit(copy.deepcopy(function))
        return ast.dump(function.args) + "".join(ast.dump(line) for line in function.body)

    marked = 0
    for key, exit_code in meta["exit_code_by_key"].items():
        mangled, _, variant = key.removeprefix(f"rtl.{stem}.").partition("__mutmut_")
        variants = functions.get(mangled, {})
        if exit_code in (None, 0) and variant in variants and \
                normal(variants[variant]) == normal(variants["orig"]):
            meta["exit_code_by_key"][key] = _SKIPPED
            marked += 1
    meta_path.write_text(json.dumps(meta, indent=4))
    return marked


def _definition_lines(path):
    """Return ``{mangled name: line of its def}`` for the functions and methods in ``path``, with
    mutmut's names (``x_function``, ``xǁClassǁmethod``)."""
    lines = {}

    def visit(body, owner):
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{owner}.{node.name}" if owner else node.name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines[f"xǁ{owner}ǁ{node.name}" if owner else f"x_{node.name}"] = node.lineno
    visit(ast.parse(path.read_text()).body, "")
    return lines


def _diff(stem, work, key, functions, lines, definitions):
    """Return the changed lines of mutant ``key``, numbered as in ``rtl/<stem>.py``."""
    mangled, _, variant = key.removeprefix(f"rtl.{stem}.").partition("__mutmut_")
    variants = functions.get(mangled, {})
    if variant not in variants:
        return ["  (mutant not found in the mutated file)"]

    def source(node):
        # The def line with the name the function has in rtl/, so that only the mutation shows.
        name = mangled.rpartition("ǁ")[2].removeprefix("x_")
        definition = lines[node.lineno - 1].replace(node.name, name)
        return [definition, *lines[node.lineno:node.end_lineno]]
    before, after = source(variants["orig"]), source(variants[variant])
    first = definitions.get(mangled, 1)
    text = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, start, end, other_start, other_end in matcher.get_opcodes():
        if tag != "equal":
            text.append(f"  rtl/{stem}.py:{first + start}")
            text += [f"  - {line}" for line in before[start:end]]
            text += [f"  + {line}" for line in after[other_start:other_end]]
    return text


def _summarise(stem, work, minutes):
    """Write ``<stem>.json`` and ``<stem>.txt`` from mutmut's results; return the counts."""
    meta = json.loads((work / "mutants" / "rtl" / f"{stem}.py.meta").read_text())
    counts = dict.fromkeys(_COLUMNS, 0)
    unkilled = []
    for key, exit_code in meta["exit_code_by_key"].items():
        column = _COLUMN.get(exit_code, "other")
        counts[column] += 1
        if column in _UNKILLED:
            unkilled.append((key, column, exit_code))
    counts["mutants"] = len(meta["exit_code_by_key"]) - counts["excluded"]
    counts["minutes"] = round(minutes, 1)
    (RESULTS / f"{stem}.json").write_text(json.dumps(counts, indent=1))
    functions, lines = _mutated_functions(stem, work)
    definitions = _definition_lines(work / "rtl" / f"{stem}.py")
    show = f"cd {work.relative_to(ROOT)} && {_mutmut_path()} show"
    text = [f"# rtl/{stem}.py: mutants no test killed ({len(unkilled)}); see one with",
            f"#   {show} NAME", ""]
    for key, column, exit_code in unkilled:
        text.append(f"{key}  {column}" + (f" (exit {exit_code})" if column == "other" else ""))
        text += _diff(stem, work, key, functions, lines, definitions) + [""]
    (RESULTS / f"{stem}.txt").write_text("\n".join(text))
    return counts


def _rate(counts):
    checked = sum(counts[column] for column in ("killed", "timeout", *_UNKILLED))
    return (counts["killed"] + counts["timeout"]) / checked if checked else None


def _table():
    """Return the table of every file with results, in :data:`TESTS` order, as Markdown."""
    head = ("file", *_COLUMNS, "kill rate", "minutes")
    rows = [" | ".join(head), " | ".join("---" for _ in head)]
    total = dict.fromkeys((*_COLUMNS, "minutes"), 0)
    for stem in TESTS:
        path = RESULTS / f"{stem}.json"
        if not path.exists():
            continue
        counts = json.loads(path.read_text())
        for column in total:
            total[column] += counts[column]
        rows.append(_row(f"rtl/{stem}.py", counts))
    rows.append(_row("all", total))
    return "\n".join(f"| {row} |" for row in rows)


def _write_summary():
    table = _table()
    (RESULTS / "summary.md").write_text(f"# Mutation testing of rtl/ (mutmut)\n\n{table}\n")
    return table


def _row(name, counts):
    rate = _rate(counts)
    return " | ".join([name, *(str(counts[column]) for column in _COLUMNS),
                       "-" if rate is None else f"{rate:.1%}", f"{counts['minutes']:.1f}"])


def _mutmut_path():
    return Path(sys.executable).with_name("mutmut")


_PROGRESS = re.compile(r"(\d+)/(\d+)\s+🎉 (\d+) 🫥 (\d+)\s+⏰ (\d+)\s+🤔 (\d+)\s+🙁 (\d+)")


def _run_mutmut(work, arguments, seed, deadline, on_progress):
    """Run mutmut in ``work``, its output to ``mutmut.log``; interrupt it at ``deadline`` (a
    monotonic time, or None). Return its exit status, or None if it was interrupted."""
    env = dict(os.environ, SMTNI_SEED=str(seed))
    with open(work / "mutmut.log", "ab") as log:
        process = subprocess.Popen([str(_mutmut_path()), *arguments], cwd=work, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        os.set_blocking(process.stdout.fileno(), False)
        try:
            while process.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    _stop(process)
                    return None
                time.sleep(0.5)
                chunk = process.stdout.read() or b""
                log.write(chunk)
                for match in _PROGRESS.finditer(chunk.decode(errors="replace")):
                    on_progress(*map(int, match.groups()))
        except KeyboardInterrupt:
            _stop(process)
            raise
        finally:
            log.write(process.stdout.read() or b"")
    return process.returncode


def _stop(process):
    """Interrupt mutmut as Ctrl-C does (it saves what it has), then kill what is left."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def mutate(stem, args, progress):
    """Mutation-test ``rtl/<stem>.py``; return its counts (None if mutmut failed)."""
    work = args.work / stem
    meta = work / "mutants" / "rtl" / f"{stem}.py.meta"
    _prepare(work, stem, args.timeout, args.resume or args.recheck)
    start = time.monotonic()
    deadline = start + args.minutes * 60 if args.minutes else None
    task = progress.add_task(f"rtl/{stem}.py", total=None, counts="generating mutants")

    def on_progress(done, total, killed, no_tests, timeout, suspicious, survived):
        progress.update(task, completed=done, total=total,
                        counts=f"killed {killed + timeout}  survived {survived + no_tests}")

    def run(*names):
        return _run_mutmut(work, ["run", "--max-children", "1", *names], args.seed, deadline,
                           on_progress)
    try:
        if args.recheck and meta.exists():
            _cosmetic(stem, work)
            # A pattern, "rtl.<stem>.*<rest>", that names the one mutant: mutmut looks a plain
            # name's tests up and stops at a function no test reached.
            unkilled = [key.replace(f"rtl.{stem}.", f"rtl.{stem}.*", 1)
                        for key, exit_code in _exit_codes(meta).items()
                        if _COLUMN.get(exit_code, "other") in _UNKILLED]
            status = run(*unkilled) if unkilled else 0
        else:
            # First the first mutant of each function, which makes them all; then the rest,
            # but for those marked skipped between the two.
            status = run(f"rtl.{stem}.*__mutmut_1")
            if status == 0 and meta.exists():
                _cosmetic(stem, work)
                status = run()
        if status not in (0, None) or not meta.exists():
            progress.console.print(f"rtl/{stem}.py: mutmut failed (exit {status}); "
                                   f"see {work / 'mutmut.log'}")
    finally:
        progress.remove_task(task)
        counts = None
        if meta.exists():
            earlier = RESULTS / f"{stem}.json"
            minutes = (time.monotonic() - start) / 60
            if (args.resume or args.recheck) and earlier.exists():
                minutes += json.loads(earlier.read_text())["minutes"]
            counts = _summarise(stem, work, minutes)
    if counts is None:
        return None
    rate = _rate(counts)
    progress.console.print(
        f"rtl/{stem}.py: {counts['mutants']} mutants, {counts['killed']} killed, "
        f"{counts['survived']} survived, {counts['timeout']} timeout, {counts['no tests']} "
        f"reached by no test, {counts['not run']} not run"
        f"{'' if rate is None else f', kill rate {rate:.1%}'} ({counts['minutes']:.1f} min)")
    return counts


def _exit_codes(meta):
    return json.loads(meta.read_text())["exit_code_by_key"]


def _positive(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def main(argv=None):
    # Imported here: the module is also the plugin of every pytest run in the copies.
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    parser = argparse.ArgumentParser(prog="python -m tb.mutants",
                                     description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help=f"RTL files to mutate (rtl/tlb.py or tlb; default: all, "
                             f"in this order: {' '.join(TESTS)})")
    parser.add_argument("--timeout", type=_positive, default=30.0,
                        help="CPU seconds a mutant may take beyond twice its tests' clean time "
                             "(default 30)")
    parser.add_argument("--minutes", type=_positive,
                        help="stop each file after this many minutes, with partial results")
    parser.add_argument("--seed", type=int, default=1, help="seed of the randomized tests")
    parser.add_argument("--resume", action="store_true",
                        help="keep the copies and mutmut's results: test only what is new")
    parser.add_argument("--recheck", action="store_true",
                        help="test again only the mutants that no test killed last time (after "
                             "adding tests)")
    parser.add_argument("--report", action="store_true",
                        help="only write the reports again from the copies' results")
    parser.add_argument("--work", type=Path, default=RESULTS / "work",
                        help="where the copies go (default results/mutants/work)")
    args = parser.parse_args(argv)
    stems = [Path(name).stem for name in args.files] or list(TESTS)
    unknown = [stem for stem in stems if stem not in TESTS]
    if unknown:
        parser.error(f"no unit tests are listed for rtl/{unknown[0]}.py; "
                     f"choose among {', '.join(TESTS)}")
    args.work = args.work.resolve()
    RESULTS.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    console.print(f"mutmut on {len(stems)} file(s), one worker, seed {args.seed} "
                  f"(replay with --seed {args.seed})")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[counts]}"), TimeElapsedColumn())
    start = time.monotonic()
    try:
        if args.report:
            for stem in stems:
                if (args.work / stem / "mutants" / "rtl" / f"{stem}.py.meta").exists():
                    earlier = RESULTS / f"{stem}.json"
                    minutes = json.loads(earlier.read_text())["minutes"] if earlier.exists() else 0
                    _summarise(stem, args.work / stem, minutes)
            return
        with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
            for stem in stems:
                mutate(stem, args, progress)
                _write_summary()
    finally:
        print(_write_summary())
        print(f"\n{(time.monotonic() - start) / 60:.1f} min; survivors in "
              f"{RESULTS.relative_to(ROOT)}/<file>.txt")


if __name__ == "__main__":
    main()
