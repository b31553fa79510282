from fractions import Fraction

import pytest
import vcdvcd

from tb import waves as waves_module
from tb.waves import Waves, WavesError

PAYLOAD_LAST = 1 << 64

# Value changes in ps of the test waveform, besides a 1 ns clock starting low at 0. Verilator
# writes vector names with a range and struct views with dots; "top.fabric.arbiter0.clk" is an
# alias of "top.fabric.clk" (same identifier code).
CHANGES = {
    0: ["1&", "0\"", "bx #", "bx $", "x%", "bxx '"],
    1000: ["0&", "b1x '"],
    2000: ["1\"", f"b{PAYLOAD_LAST | 0x2a:b} #", f"b{0x2a:b} $", "1%", "b10 '"],
    3000: ["1\"", f"b{0x1f:b} #", f"b{0x1f:b} $", "0%"],   # valid rewritten unchanged
    4000: ["0\""],
}
END_PS = 5000

DECLARATIONS = """\
$date today $end
$timescale {timescale} $end
$scope module top $end
 $scope module fabric $end
  $var wire 1 ! clk $end
  $var wire 1 " inputs__0__valid $end
  $var wire 65 # inputs__0__payload [64:0] $end
  $var wire 64 $ {escape}inputs__0__payload.data [63:0] $end
  $var wire 1 % {escape}inputs__0__payload.last $end
  $var wire 1 & rst $end
  $scope module arbiter0 $end
   $var wire 1 ! clk $end
   $var wire 2 ' grant [1:0] $end
  $upscope $end
 $upscope $end
$upscope $end
$enddefinitions $end
"""

SIGNALS = [
    "top.fabric.arbiter0.clk",
    "top.fabric.arbiter0.grant",
    "top.fabric.clk",
    "top.fabric.inputs__0__payload",
    "top.fabric.inputs__0__payload.data",
    "top.fabric.inputs__0__payload.last",
    "top.fabric.inputs__0__valid",
    "top.fabric.rst",
]
CLK, VALID = "top.fabric.clk", "top.fabric.inputs__0__valid"
DATA = "top.fabric.inputs__0__payload.data"


def write_vcd(path, *, timescale="1ps", ticks_per_ps=1, escape=""):
    """Write the test waveform; ``ticks_per_ps`` must match ``timescale``."""
    changes = {t: list(lines) for t, lines in CHANGES.items()}
    for t in range(0, END_PS + 1, 500):
        changes.setdefault(t, []).append(f"{t // 500 % 2}!")
    lines = [DECLARATIONS.format(timescale=timescale, escape=escape)]
    for t in sorted(changes):
        lines.append(f"#{t * ticks_per_ps}")    # str(Fraction(5)) is "5"
        lines.extend(["$dumpvars", *changes[t], "$end"] if t == 0 else changes[t])
    path.write_text("\n".join(lines) + "\n")
    return path


# One flag, named by the identifier code "#9" that a cut line "...1#9" could pass for a timestamp,
# changing at 0.3 ns (not a binary fraction), with a glitch at 0.5 ns that settles unchanged.
FLAG_VCD = """\
$timescale 1ps $end
$scope module top $end
$var wire 1 #9 flag $end
$upscope $end
$enddefinitions $end
#0
0#9
#300
1#9
#500
0#9
1#9
#700
0#9
"""
FLAG = "top.flag"


@pytest.fixture
def flag(tmp_path):
    path = tmp_path / "flag.vcd"
    path.write_text(FLAG_VCD)
    return Waves(path)


@pytest.fixture
def vcd(tmp_path):
    return write_vcd(tmp_path / "test.vcd")


@pytest.fixture
def waves(vcd):
    return Waves(vcd)


# Listing ---------------------------------------------------------------------------------------

def test_lists_signals_sorted_without_ranges(waves, vcd):
    assert waves.path == vcd
    assert waves.signals == SIGNALS
    assert waves.end_time == 5
    assert waves.timescale == "1ps"


def test_drops_backslash_of_escaped_names_and_still_reads_them(tmp_path):
    waves = Waves(write_vcd(tmp_path / "icarus.vcd", escape="\\"))
    assert waves.signals == SIGNALS
    assert waves.transitions([DATA], end=2) == [(0, DATA, "x"), (2, DATA, "0x2a")]


@pytest.mark.parametrize("timescale, ticks_per_ps",
                         [("100ps", Fraction(1, 100)), ("10 ps", Fraction(1, 10)), ("1fs", 1000)])
def test_converts_times_to_ns(tmp_path, timescale, ticks_per_ps):
    waves = Waves(write_vcd(tmp_path / "t.vcd", timescale=timescale, ticks_per_ps=ticks_per_ps))
    assert waves.end_time == 5
    assert waves.transitions([VALID]) == [(0, VALID, "0"), (2, VALID, "1"), (4, VALID, "0")]
    assert waves.transitions([CLK], start=0.5, end=1) == [(0.5, CLK, "1"), (1, CLK, "0")]


def test_finds_end_time_beyond_the_first_chunk_read_from_the_end(vcd, monkeypatch):
    monkeypatch.setattr(waves_module, "_TAIL_CHUNK", 8)
    assert Waves(vcd).end_time == 5


def test_end_time_ignores_a_cut_line_that_looks_like_a_timestamp(flag, monkeypatch):
    monkeypatch.setattr(waves_module, "_TAIL_CHUNK", 3)     # the first read is "#9\n"
    assert flag.end_time == 0.7


# Selection -------------------------------------------------------------------------------------

def test_selects_by_glob_on_full_name(waves):
    assert waves.select(["top.fabric.inputs__0__payload*"]) == SIGNALS[3:6]


def test_selects_by_glob_on_leaf_name(waves):
    # Anchored: matches "inputs__0__valid" but not the full name "top.fabric.inputs__0__valid".
    assert waves.select(["inputs__?__valid"]) == [VALID]
    assert waves.select(["inputs__0__payload.*"]) == [DATA, "top.fabric.inputs__0__payload.last"]
    assert waves.select(["cl[k]"]) == ["top.fabric.arbiter0.clk", CLK]


def test_selects_by_substring_in_file_order_without_duplicates(waves):
    assert waves.select(["valid", "rst", "payload.data", "inputs__0__valid"]) == [
        DATA, VALID, "top.fabric.rst"]


def test_unknown_pattern_names_it_and_says_how_to_list(waves, vcd):
    with pytest.raises(WavesError) as error:
        waves.select(["clk", "nope*"])
    assert str(error.value) == (f"no signal matches 'nope*' in {vcd}; "
                                f"run 'smtni waves {vcd}' to list them")


def test_glob_is_case_sensitive(waves):
    with pytest.raises(WavesError, match="'CLK'"):
        waves.select(["CLK"])


def test_unknown_signal_name_is_refused(waves):
    with pytest.raises(WavesError, match="unknown signal 'clk'"):
        waves.transitions(["clk"])


# Transitions -----------------------------------------------------------------------------------

def test_transitions_of_whole_file_skip_unchanged_rewrites(waves):
    assert waves.transitions([VALID, "top.fabric.rst"]) == [
        (0, VALID, "0"), (0, "top.fabric.rst", "1"), (1, "top.fabric.rst", "0"),
        (2, VALID, "1"), (4, VALID, "0")]


def test_transitions_format_buses(waves):
    payload, grant = "top.fabric.inputs__0__payload", "top.fabric.arbiter0.grant"
    assert waves.transitions([payload, grant]) == [
        (0, payload, "x"), (0, grant, "xx"), (1, grant, "1x"),
        (2, payload, "0x1000000000000002a"), (2, grant, "0x2"), (3, payload, "0x1f")]


def test_transitions_in_window_start_with_the_state_at_start(waves):
    assert waves.transitions([CLK, DATA, VALID], start=2.7, end=3.5) == [
        (2.7, CLK, "1"), (2.7, DATA, "0x2a"), (2.7, VALID, "1"),
        (3, CLK, "0"), (3, DATA, "0x1f"),
        (3.5, CLK, "1")]


def test_change_at_window_start_is_the_state_at_start(waves):
    assert waves.transitions([DATA, VALID], start=2, end=2.5) == [(2, DATA, "0x2a"),
                                                                   (2, VALID, "1")]


def test_alias_has_the_values_of_its_identifier(waves):
    alias = "top.fabric.arbiter0.clk"
    assert waves.transitions([alias], start=1, end=2) == [(1, alias, "0"), (1.5, alias, "1"),
                                                           (2, alias, "0")]


def test_later_window_reads_further_into_the_file(waves):
    assert waves.transitions([VALID], end=1) == [(0, VALID, "0")]
    assert waves.transitions([VALID], start=1) == [(1, VALID, "0"), (2, VALID, "1"),
                                                   (4, VALID, "0")]


def test_transitions_keep_the_settled_value_of_a_glitch(flag):
    assert flag.transitions([FLAG]) == [(0, FLAG, "0"), (0.3, FLAG, "1"), (0.7, FLAG, "0")]


def test_window_bounds_are_exact_decimal_ns(flag):
    # 0.3 is just below 3/10 as a binary float: taken as such, it would drop the change at 300 ps.
    assert flag.transitions([FLAG], end=0.3) == [(0, FLAG, "0"), (0.3, FLAG, "1")]
    assert flag.transitions([FLAG], start=0.3) == [(0.3, FLAG, "1"), (0.7, FLAG, "0")]


@pytest.mark.parametrize("start, end, message", [
    (5.0, 2, "start time 5 ns is after end time 2 ns"),
    (-1, None, "start time -1 ns is negative"),
    (None, -0.5, "end time -0.5 ns is negative"),
    ("soon", None, "start time 'soon' is not a number"),
])
def test_bad_window_is_refused(waves, start, end, message):
    with pytest.raises(WavesError, match=message):
        waves.transitions([CLK], start=start, end=end)


# Table -----------------------------------------------------------------------------------------

def test_table_has_header_and_a_row_per_change(waves):
    lines = waves.table([CLK, VALID, DATA], start=2, end=3).splitlines()
    assert lines[0] == "# test.vcd, scope top.fabric: time in ns (timescale 1ps); '.' = unchanged"
    assert [line.split() for line in lines[1:]] == [
        ["time", "clk", "inputs__0__valid", "inputs__0__payload.data"],
        ["2", "0", "1", "0x2a"],
        ["2.5", "1", ".", "."],
        ["3", "0", ".", "0x1f"],
    ]


def test_table_columns_are_aligned(waves):
    header, *rows = waves.table([CLK, VALID, DATA], start=2, end=3).splitlines()[1:]
    starts = [header.index(title) for title in ("clk", "inputs__0__valid", "inputs__0__payload")]
    for row in rows:
        assert [row[at - 2:at] for at in starts] == ["  "] * 3
        assert all(row[at] != " " for at in starts)


def test_table_names_columns_below_the_shared_scope(waves):
    lines = waves.table(["top.fabric.arbiter0.grant", CLK], end=0).splitlines()
    assert "scope top.fabric:" in lines[0]
    assert lines[1].split() == ["time", "arbiter0.grant", "clk"]


def test_table_keeps_struct_view_names_whole(waves):
    lines = waves.table([DATA, "top.fabric.inputs__0__payload.last"], end=0).splitlines()
    assert "scope top.fabric:" in lines[0]
    assert lines[1].split() == ["time", "inputs__0__payload.data", "inputs__0__payload.last"]


def test_table_starts_with_the_state_at_window_start(waves):
    lines = waves.table(["top.fabric.rst", CLK], start=0.2, end=1).splitlines()
    assert [line.split() for line in lines[2:]] == [["0.2", "1", "0"], ["0.5", ".", "1"],
                                                    ["1", "0", "0"]]


def test_reads_values_once_for_table_and_plot(waves, tmp_path, monkeypatch):
    parses = []
    parse = vcdvcd.VCDVCD

    def counting(*args, **kwargs):
        parses.append(kwargs)
        return parse(*args, **kwargs)

    monkeypatch.setattr(vcdvcd, "VCDVCD", counting)
    waves.table([CLK, VALID])
    waves.plot([CLK, VALID], tmp_path / "w.png", start=1, end=3)
    assert len(parses) == 1 and parses[0]["signals"]


# Plot ------------------------------------------------------------------------------------------

def test_plot_writes_png_creating_folders(waves, tmp_path):
    out = tmp_path / "figures" / "deep" / "w.png"
    assert waves.plot([CLK, VALID, DATA, "top.fabric.inputs__0__payload"], out, start=1) == out
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_plot_to_unwritable_path_is_refused(waves, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(WavesError, match="cannot write the diagram to .*choose a writable path"):
        waves.plot([CLK], blocker / "w.png")


# Bad files -------------------------------------------------------------------------------------

def test_missing_file_is_refused(tmp_path):
    path = tmp_path / "absent.vcd"
    with pytest.raises(WavesError, match=f"^no waveform at '{path}': No such file"):
        Waves(path)


def test_folder_is_refused(tmp_path):
    with pytest.raises(WavesError, match=f"^no waveform at '{tmp_path}'"):
        Waves(tmp_path)


@pytest.mark.parametrize("content, reason", [
    (b"time,clk\n0,1\n", r"it does not start with a \$ declaration"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", r"it does not start with a \$ declaration"),
    (b"$date today $end\n$enddefinitions $end\n#0\n", r"it declares no signals \(\$var\)"),
    (b"$timescale 1ps $end\n$scope module top $end\n$var wire 2 ! x $end\n$enddefinitions $end\n"
     b"#zero\n", "ValueError: "),
])
def test_non_vcd_file_is_refused(tmp_path, content, reason):
    path = tmp_path / "bad.vcd"
    path.write_bytes(content)
    with pytest.raises(WavesError, match=f"^'{path}' is not a VCD file: {reason}"):
        waves = Waves(path)
        waves.transitions(waves.signals)
