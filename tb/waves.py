"""List, tabulate and draw the signals of a VCD waveform: the back end of ``smtni waves``.

Times
-----
The testbenches simulate 1 ns per clock cycle, so a time in ns is a cycle number. Every time this
module takes (``start``, ``end``) or gives (:attr:`Waves.end_time`, :meth:`Waves.transitions`,
the table, the diagram's axis) is therefore in ns, whatever the file's ``$timescale`` (1 ps for
the simulators here). A time is an :class:`int` when it is a whole number of ns and a
:class:`float` otherwise. A file without ``$timescale`` has its time steps taken as ns.

Names
-----
A signal is named by its scopes and its variable name joined by dots, e.g.
``fabric.inputs__0__valid``. Amaranth struct field views have dots of their own
(``fabric.inputs__0__payload.data``), so the scope and the variable name are told apart from the
file's ``$scope`` declarations, not by the last dot. The range that vcdvcd glues to a vector's
name (``payload[64:0]``) and the backslash of Verilog escaped names (``\\payload.data``, as Icarus
writes them) are left out.

Values
------
One-bit signals read ``0``, ``1``, ``x`` or ``z``; wider ones are hexadecimal (``0x1f``), or the
bits as written in the file when some are ``x`` or ``z``. A rewrite of a signal with the value it
already holds is not a change.
"""

import bisect
import math
import re
from fractions import Fraction
from fnmatch import fnmatchcase
from functools import cached_property
from os.path import commonprefix
from pathlib import Path

import vcdvcd

__all__ = ["Waves", "WavesError"]

_GLOB_CHARS = "*?["
_RANGE_SUFFIX = re.compile(r"\[-?\d+:-?\d+\]$")    # only ranges: a bit select names a distinct var
_ESCAPE = re.compile(r"(^|\.)\\")
_TIMESTAMP = re.compile(rb"^#(\d+)", re.MULTILINE)
_TAIL_CHUNK = 1 << 16
_SNIFF_BYTES = 4096


class WavesError(ValueError):
    """A waveform, signal name, pattern or time that cannot be used; the message is one line."""


class Waves:
    """Signals and value changes of one VCD file, read on demand.

    Opening a file reads its declarations only; value changes are read when first asked for, for
    the signals asked for, and kept.

    Parameters
    ----------
    path : str or Path
        The VCD file.

    Attributes
    ----------
    path : Path
    signals : list of str
        Full names of the signals, sorted.
    timescale : str or None
        The file's time step as written there, e.g. ``"1ps"``; None when the file has none.

    Raises
    ------
    WavesError
        If the file is missing or unreadable, or is not a VCD file.
    """

    def __init__(self, path):
        self.path = Path(path)
        header = self._read_header()
        self._refs, self._scopes, self._leaves, self._kinds = _names(header)
        self.signals = sorted(self._refs)
        self.timescale, self._ns_per_tick = _timescale(header)
        self._changes = {}          # name -> (ticks, values) of the real changes read so far
        self._read_until = {}       # name -> last tick read for it; None for the whole file

    # Loading ---------------------------------------------------------------------------------

    def _read_header(self):
        try:
            with open(self.path, "rb") as file:
                head = file.read(_SNIFF_BYTES)
        except OSError as error:
            raise WavesError(f"no waveform at '{self.path}': {error.strerror or error}; check the "
                             "path (the testbenches write one with --waves)") from None
        if head[:1] == b"\x00" or self.path.suffix == ".fst":
            raise WavesError(f"'{self.path}' is an FST file, and smtni waves reads VCD only; "
                             "open it in GTKWave (with the .gtkw beside it), or run again with "
                             "--waves for a VCD")
        # Check before vcdvcd, which would read a large non-VCD file to its end looking for $var.
        if not head.lstrip().startswith(b"$"):
            self._not_vcd("it does not start with a $ declaration such as $date or $timescale")
        header = self._parse(only_sigs=True, store_scopes=True)
        if not header.signals:
            self._not_vcd("it declares no signals ($var)")
        return header

    def _parse(self, **options):
        try:
            return vcdvcd.VCDVCD(str(self.path), **options)
        except OSError as error:
            raise WavesError(f"no waveform at '{self.path}': {error.strerror or error}; check the "
                             "path") from None
        except Exception as error:      # vcdvcd reports malformed text with whatever it trips on
            self._not_vcd(f"{type(error).__name__}: {error}")

    def _not_vcd(self, reason):
        raise WavesError(f"'{self.path}' is not a VCD file: {reason}; pass a .vcd file written by "
                         "a simulator")

    def _load(self, names, end_tick):
        """Return ``{name: (ticks, values)}`` for ``names``, reading the file only if needed."""
        missing = [name for name in names if not self._has_read(name, end_tick)]
        if missing:
            refs = [self._refs[name] for name in missing]
            data = self._parse(signals=refs, to_time=end_tick)
            for name, ref in zip(missing, refs):
                self._changes[name] = _real_changes(data[ref].tv, self._kinds[name])
                self._read_until[name] = end_tick
        return {name: self._changes[name] for name in names}

    def _has_read(self, name, end_tick):
        if name not in self._changes:
            return False
        until = self._read_until[name]
        return until is None or (end_tick is not None and end_tick <= until)

    @cached_property
    def end_time(self):
        """Time of the last timestamp in the file, in ns."""
        return self._ns(self._last_tick())

    def _last_tick(self):
        """Find the last timestamp by reading the file backwards: much cheaper than parsing it."""
        with open(self.path, "rb") as file:
            size = file.seek(0, 2)
            chunk = _TAIL_CHUNK
            while True:
                offset = max(0, size - chunk)
                file.seek(offset)
                tail = file.read()
                if offset:
                    # The first line may be cut, and a cut line can look like a timestamp.
                    tail = tail[tail.find(b"\n") + 1:] if b"\n" in tail else b""
                stamps = _TIMESTAMP.findall(tail)
                if stamps:
                    return int(stamps[-1])
                if not offset:
                    return 0
                chunk *= 4

    # Names -----------------------------------------------------------------------------------

    def declared_name(self, name):
        """Return signal ``name`` as the file declares it, which is what GTKWave calls it: the
        backslash of a Verilog escaped name kept, a vector's range appended (``[63:0]``)."""
        return self._refs[name]

    def select(self, patterns):
        """Return the signals that any of ``patterns`` matches, in the order of :attr:`signals`.

        A pattern is a case-sensitive glob (``*``, ``?``, ``[...]``) matched against the full
        name and against every part of it that follows a dot, so ``inputs__?__valid`` or
        ``fabric.*valid`` match ``top.fabric.inputs__0__valid``. A pattern without glob
        characters also matches anywhere inside the full name.

        Raises
        ------
        WavesError
            If a pattern matches no signal.
        """
        if isinstance(patterns, str):
            patterns = [patterns]
        chosen = set()
        for pattern in patterns:
            found = [name for name in self.signals if self._matches(name, pattern)]
            if not found:
                raise WavesError(f"no signal matches {pattern!r} in {self.path}; "
                                 f"run 'smtni waves {self.path}' to list them")
            chosen.update(found)
        return [name for name in self.signals if name in chosen]

    def _matches(self, name, pattern):
        if not any(char in pattern for char in _GLOB_CHARS) and pattern in name:
            return True
        # The tail glob also matches the name without its scopes, dots of struct views included.
        return fnmatchcase(name, pattern) or fnmatchcase(name, "*." + pattern)

    def _check_names(self, signals):
        if isinstance(signals, str):
            signals = [signals]
        names = list(dict.fromkeys(signals))
        if not names:
            raise WavesError(f"no signals chosen; pick some from 'smtni waves {self.path}'")
        for name in names:
            if name not in self._refs:
                raise WavesError(f"unknown signal {name!r} in {self.path}; "
                                 f"run 'smtni waves {self.path}' to list them")
        return names

    def _short_names(self, names):
        """Return the scope shared by ``names`` and the names without it."""
        paths = [self._scopes[name].split(".") if self._scopes[name] else [] for name in names]
        shared = commonprefix(paths)
        short = [".".join(path[len(shared):] + [self._leaves[name]])
                 for name, path in zip(names, paths)]
        return ".".join(shared), short

    # Times -----------------------------------------------------------------------------------

    def _ns(self, tick):
        # Integer arithmetic: converting every change through Fraction costs seconds on big files.
        ns_num, ns_den = self._ns_per_tick.numerator, self._ns_per_tick.denominator
        whole, rest = divmod(tick * ns_num, ns_den)
        return whole if not rest else tick * ns_num / ns_den

    def _window(self, start, end):
        """Check a window in ns; return its bounds as exact ns (None when open)."""
        low, high = _exact_ns("start", start), _exact_ns("end", end)
        if low is not None and high is not None and low > high:
            raise WavesError(f"start time {_number(low)} ns is after end time {_number(high)} ns; "
                             "give a start no later than the end")
        return low, high

    # Values ----------------------------------------------------------------------------------

    def transitions(self, signals, start=None, end=None):
        """Return the value changes of ``signals`` between ``start`` and ``end``.

        Parameters
        ----------
        signals : list of str
            Full names, as in :attr:`signals`.
        start, end : int or float, optional
            Window in ns, bounds included; open when None.

        Returns
        -------
        list of (time, signal, value)
            Sorted by time, then by the order of ``signals``. When ``start`` is above 0, each
            signal also has an entry at ``start`` with the value it holds then (``x`` before its
            first value), so that the window shows the state it begins with.

        Raises
        ------
        WavesError
            If a signal is unknown, or a time negative, not a number or ``start`` after ``end``.
        """
        names = self._check_names(signals)
        low, high = self._window(start, end)
        end_tick = None if high is None else math.floor(high / self._ns_per_tick)
        changes = self._load(names, end_tick)
        keyed = []
        for order, name in enumerate(names):
            ticks, values = changes[name]
            first = 0
            if low:
                # The state at ``start`` is the last change at or before it.
                first = bisect.bisect_right(ticks, low / self._ns_per_tick)
                held = values[first - 1] if first else "x"
                keyed.append((low / self._ns_per_tick, order, _number(low), name, held))
            last = len(ticks) if end_tick is None else bisect.bisect_right(ticks, end_tick)
            keyed.extend((ticks[i], order, self._ns(ticks[i]), name, values[i])
                         for i in range(first, last))
        keyed.sort(key=lambda entry: entry[:2])
        return [(time, name, value) for _, _, time, name, value in keyed]

    def table(self, signals, start=None, end=None):
        """Return the value changes of ``signals`` as a text table for a terminal.

        A comment line states the shared scope and the time unit; then a header line ``time``
        with one column per signal (named without the shared scope), and one row per time at
        which any of them changed, ``.`` marking the signals that did not. See
        :meth:`transitions` for the arguments and errors.
        """
        names = self._check_names(signals)
        rows = {}
        column = {name: i for i, name in enumerate(names)}
        for time, name, value in self.transitions(names, start, end):
            rows.setdefault(time, ["."] * len(names))[column[name]] = value
        scope, short = self._short_names(names)
        lines = [["time", *short]] + [[str(time), *cells] for time, cells in rows.items()]
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        body = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                for line in lines]
        where = f"{self.path.name}, scope {scope}" if scope else self.path.name
        unit = f"timescale {self.timescale}" if self.timescale else "no timescale in the file"
        comment = f"# {where}: time in ns ({unit}); '.' = unchanged"
        if not rows:
            body.append("# no value changes in this window")
        return "\n".join([comment, *body])

    def plot(self, signals, out_png, start=None, end=None):
        """Draw a timing diagram of ``signals`` to the PNG file ``out_png``; return its path.

        One row per signal: a step line for a 1-bit signal, bus segments labelled with their
        value (where the label fits) for a wider one; ``x``/``z`` are shaded red. The window is
        ``start`` (default 0) to ``end`` (default :attr:`end_time`), in ns; see
        :meth:`transitions` for the errors.

        Raises
        ------
        WavesError
            Also if ``out_png`` or its folder cannot be written.
        """
        from matplotlib.figure import Figure     # slow import; listing and tables skip it

        names = self._check_names(signals)
        changes = {name: [] for name in names}
        for time, name, value in self.transitions(names, start, end):
            changes[name].append((time, value))
        left = 0 if start is None else start
        right = self.end_time if end is None else end
        right = right if right > left else left + 1
        scope, short = self._short_names(names)

        figure = Figure(figsize=(12, 0.55 * len(names) + 1.3), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        ns_per_pixel = (right - left) / (12 * 100 * 0.85)
        for row, name in enumerate(names):
            draw = _draw_bit if self._kinds[name] == "bit" else _draw_bus
            draw(axes, changes[name], -1.5 * row, right, ns_per_pixel)
        axes.set_yticks([-1.5 * row + 0.5 for row in range(len(names))], short)
        axes.set_xlim(left, right)
        axes.set_ylim(-1.5 * len(names) + 1.2, 1.3)
        axes.set_xlabel("time (ns)")
        axes.grid(axis="x", alpha=0.3)
        axes.set_title(f"{self.path.name} ({scope})" if scope else self.path.name)
        out = Path(out_png)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(out, format="png")
        except OSError as error:
            raise WavesError(f"cannot write the diagram to '{out}': {error.strerror or error}; "
                             "choose a writable path for --png") from None
        return out


# Declarations ----------------------------------------------------------------------------------

def _names(header):
    """Map display names to vcdvcd references, scopes, variable names and value kinds."""
    placed = {}                 # vcdvcd reference -> (scope, variable name as declared)
    for scope, members in header.scopes.items():
        for var, ref in members.items():
            if isinstance(ref, str):
                placed[ref] = (scope, var)
    refs, scopes, leaves, kinds = {}, {}, {}, {}
    for ref in header.signals:
        scope, var = placed.get(ref) or _split(ref, header.scopes)
        scope = _ESCAPE.sub(r"\1", scope)
        leaf = _ESCAPE.sub(r"\1", _RANGE_SUFFIX.sub("", var))
        name = f"{scope}.{leaf}" if scope else leaf
        if name in refs:        # the same variable declared twice in one scope
            continue
        refs[name], scopes[name], leaves[name] = ref, scope, leaf
        kinds[name] = _kind(header[ref])
    return refs, scopes, leaves, kinds


def _split(ref, scopes):
    """Split ``ref`` at its longest known scope (vcdvcd forgets the members of a reopened scope)."""
    owners = [scope for scope in scopes if ref.startswith(scope + ".")]
    if not owners:
        return "", ref
    scope = max(owners, key=len)
    return scope, ref[len(scope) + 1:]


def _kind(signal):
    if signal.var_type == "real":
        return "real"
    try:
        return "bit" if int(signal.size) == 1 else "bus"
    except ValueError:
        return "bus"


def _timescale(header):
    """Return the file's time step as written and in ns."""
    if not header.timescale:
        return None, Fraction(1)
    step = Fraction(header.timescale["timescale"]) * 10**9
    return f"{header.timescale['magnitude']}{header.timescale['unit']}", step


# Values ----------------------------------------------------------------------------------------

def _real_changes(tv, kind):
    """Format vcdvcd's ``(tick, value)`` list into ticks and values of the real changes.

    Of several writes at one tick the last is the settled value; a rewrite of the value already
    held is not a change.
    """
    ticks, values = [], []
    for tick, raw in tv:
        value = _format(raw, kind)
        if ticks and ticks[-1] == tick:
            ticks.pop()
            values.pop()
        if values and values[-1] == value:
            continue
        ticks.append(tick)
        values.append(value)
    return ticks, values


def _format(raw, kind):
    raw = raw.lower()
    if kind != "bus" or raw.strip("01"):
        return raw
    return hex(int(raw, 2))


def _exact_ns(what, value):
    if value is None:
        return None
    try:
        # Through str: Fraction(0.1) is the binary float, not 1/10, and would shift the window.
        exact = Fraction(str(value))
    except (TypeError, ValueError):
        raise WavesError(f"{what} time {value!r} is not a number of ns; "
                         "give a number such as 120 or 120.5") from None
    if exact < 0:
        raise WavesError(f"{what} time {_number(exact)} ns is negative; times start at 0 ns")
    return exact


def _number(exact):
    return exact.numerator if exact.denominator == 1 else float(exact)


# Drawing ---------------------------------------------------------------------------------------

def _segments(changes, right):
    """Yield ``(begin, end, value)`` for each value held, the last one up to ``right``."""
    for (begin, value), (end, _) in zip(changes, changes[1:] + [(right, None)]):
        yield begin, end, value


def _unknown(value):
    return not value.startswith("0x") and ("x" in value or "z" in value)


def _draw_bit(axes, changes, base, right, ns_per_pixel):
    if not changes:
        return
    levels = {"0": base, "1": base + 1}
    times = [time for time, _ in changes] + [right]
    heights = [levels.get(value, base + 0.5) for _, value in changes]
    axes.step(times, heights + heights[-1:], where="post", color="tab:blue", linewidth=1)
    for begin, end, value in _segments(changes, right):
        if value not in levels:
            axes.fill_between([begin, end], base, base + 1, color="tab:red", alpha=0.25,
                              linewidth=0)


def _draw_bus(axes, changes, base, right, ns_per_pixel):
    from matplotlib.collections import PolyCollection

    slant = 3 * ns_per_pixel
    shapes, colours = [], []
    for begin, end, value in _segments(changes, right):
        edge = min(slant, (end - begin) / 2)
        shapes.append([(begin, base + 0.5), (begin + edge, base + 1), (end - edge, base + 1),
                       (end, base + 0.5), (end - edge, base), (begin + edge, base)])
        colours.append("mistyrose" if _unknown(value) else "white")
        label_pixels = 7 * len(value) + 6       # about 7 pixels per character at size 8
        if (end - begin) / ns_per_pixel >= label_pixels:
            axes.text((begin + end) / 2, base + 0.5, value, ha="center", va="center", fontsize=8,
                      clip_on=True)
    axes.add_collection(PolyCollection(shapes, facecolors=colours, edgecolors="tab:blue",
                                       linewidths=1))
