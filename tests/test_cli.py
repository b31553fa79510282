"""The smtni command line: what it prints, its exit status, and one-line errors on bad input."""

import contextlib
import io
import json
import struct
from collections import Counter

import pytest

from tb import cli, gtkw, runner
from tb.experiments import plots
from tb.waves import Waves


def smtni(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *fragments):
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("smtni: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_verilog_list(capsys):
    status, out, _ = smtni(capsys, "verilog", "--list")
    assert status == 0
    assert "fabric" in out and "nodes=2" in out and "arbiter" in out


def test_verilog_writes_file_with_nodes_shorthand(capsys, tmp_path):
    status, out, _ = smtni(capsys, "verilog", "fabric", "--nodes", "3", "-o", str(tmp_path))
    assert status == 0
    text = (tmp_path / "fabric.v").read_text()
    assert out.strip() == str(tmp_path / "fabric.v")
    assert "module fabric(" in text and "inputs__2__valid" in text and "inputs__3__" not in text


@pytest.mark.parametrize("argv, fragments", [
    (["verilog", "fabrik"], ["unknown component 'fabrik'", "fabric"]),
    (["verilog", "fabric", "--param", "nodes=17"], ["nodes must be between 2 and 16, not 17"]),
    (["verilog", "fabric", "--param", "nodes=four"], ["nodes='four'", "integer"]),
    (["verilog", "fabric", "--param", "speed=3"], ["unknown parameter 'speed'", "nodes=2"]),
    (["verilog", "fabric", "--param", "nodes"], ["'nodes' is not NAME=VALUE"]),
    (["verilog", "arbiter", "--nodes", "3"], ["unknown parameter 'nodes'"]),
    (["verilog"], ["--list"]),
    (["sim", "fabrc"], ["unknown testbench 'fabrc'"]),
    (["sim", "fabric", "--sim", "xsim"], ["invalid choice: 'xsim'"]),
    (["sim", "fabric", "--param", "messages=lots"], ["messages='lots'"]),
    (["sim", "fabric", "--param", "nodes=1"], ["nodes must be between 2 and 16, not 1"]),
    (["waves", "/no/such/file.vcd"], ["/no/such/file.vcd"]),
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
])
def test_bad_input_is_one_line_and_status_2(capsys, argv, fragments):
    status, _, err = smtni(capsys, *argv)
    assert_one_line_error(status, err, *fragments)


def test_sim_passes_prints_seed_summary_and_waveform(capsys):
    status, out, _ = smtni(capsys, "sim", "fabric", "--sim", "icarus", "--seed", "7",
                           "--param", "messages=6", "--test", "full_contention", "--waves")
    assert status == 0, out
    assert "seed 7" in out
    assert "PASS  full_contention" in out and "PASS: 1 passed, 0 failed" in out
    wave = out.split("waveform: ")[1].split()[0]
    assert wave.endswith("fabric.vcd") and open(wave).read(200).strip()
    view = out.split("GTKWave view: ")[1].strip()
    assert view == wave.removesuffix(".vcd") + ".gtkw"
    groups = check_view(view, wave, streams=4)
    dumped = Waves(wave)
    assert {name for _, names in groups for name in names} <= {
        dumped.declared_name(signal) for signal in dumped.signals}


def read_view(path):
    """Return the dump file and ``[(group, [signal names])]`` of a GTKWave save file."""
    dumpfile, groups, current = None, [], None
    for line in open(path).read().splitlines():
        if line.startswith("[dumpfile]"):
            dumpfile = line.split('"')[1]
        elif line.startswith("-") and current is None:
            current = (line[1:], [])
        elif line.startswith("-"):
            assert line[1:] == current[0], line
            groups.append(current)
            current = None
        elif line and line[0] not in "[*@":
            assert current is not None, f"{line} outside a group"
            current[1].append(line)
    return dumpfile, groups


def check_view(view, wave, *, streams):
    """Check that ``view`` names ``wave`` and groups each of ``streams`` stream interfaces as its
    payload (or payload fields), valid, ready; return its groups."""
    dumpfile, groups = read_view(view)
    assert dumpfile == wave
    stream_groups = [(title, names) for title, names in groups
                     if any(name.endswith("__valid") for name in names)]
    assert len(stream_groups) == streams, groups
    for title, names in stream_groups:
        *payload, valid, ready = [name.split(".", 1)[1].lstrip("\\") for name in names]
        assert (valid, ready) == (f"{title}__valid", f"{title}__ready"), names
        assert payload and all(name.startswith(f"{title}__payload") for name in payload), names
    assert ("clock and reset", ["fabric.clk", "fabric.rst"]) in groups
    return groups


def test_sim_writes_fst_from_verilator_on_request(capsys):
    status, out, _ = smtni(capsys, "sim", "fabric", "--sim", "verilator", "--seed", "7",
                           "--param", "messages=6", "--test", "full_contention", "--waves=fst")
    assert status == 0, out
    wave = out.split("waveform: ")[1].split()[0]
    assert wave.endswith("fabric.fst")
    header = open(wave, "rb").read(9)
    assert header == bytes([0]) + (329).to_bytes(8, "big")      # FST's header block
    assert not list(runner.Path(wave).parent.glob("*.vcd"))
    check_view(out.split("GTKWave view: ")[1].strip(), wave, streams=4)
    status, _, err = smtni(capsys, "waves", wave)
    assert_one_line_error(status, err, "is an FST file, and smtni waves reads VCD only")


def test_sim_failure_exits_1(capsys, monkeypatch, tmp_path):
    failed = runner.RunResult(passed=False, tests={"random_traffic": "FAIL"}, seed=3,
                              log=tmp_path / "sim.log", waves=None)
    monkeypatch.setattr(runner, "run", lambda *args, **kwargs: failed)
    status, out, _ = smtni(capsys, "sim", "fabric", "--sim", "icarus", "--seed", "3")
    assert status == 1
    assert "FAIL  random_traffic" in out and "FAIL: 0 passed, 1 failed" in out


def test_demo_prints_the_latency_table_for_every_mode(capsys):
    status, out, _ = smtni(capsys, "demo", "--sim", "verilator", "--seed", "5", "--count", "1")
    assert status == 0, out
    assert "one-way doorbell->handler" in out and "notification last flit->handler" in out
    rows = [line.split() for line in out.splitlines()
            if line.split()[:1] in (["none"], ["lock"], ["branch"], ["spawn"], ["interrupt"])]
    assert sorted((row[0], row[1]) for row in rows) == sorted(
        (mode, send) for mode in ("none", "lock", "branch", "spawn", "interrupt")
        for send in ("pio", "dma"))
    assert all(row[2] == "2" for row in rows)          # 1 round trip: 2 messages each
    assert "DESIGN targets" in out and "waveforms: none" in out
    assert "ping-pong of 8 B messages" in out
    verdicts = [line for line in out.splitlines() if line.startswith(("notification:", "one way:"))]
    assert len(verdicts) == 2 and all(line.endswith(")") for line in verdicts), verdicts
    assert all(" met (target" in line or "NOT met (target" in line for line in verdicts), verdicts


def test_demo_verdicts_compare_the_medians_with_the_targets():
    medians = {(mode, send): (20, 10) for mode in cli.DEMO_MODES for send in ("pio", "dma")}
    medians["none", "pio"] = (99, 99)           # polling is not held to the targets
    medians["interrupt", "dma"] = (9999, 9999)  # nor is the OS's interrupt path
    assert cli._demo_verdicts(medians, 8) == [
        "notification: median 10 cycles (8 B, lock, branch and spawn, PIO and DMA): met "
        "(target <= 10)",
        "one way: median 20 cycles (8 B PIO, lock, branch and spawn): met (target <= 30)"]
    medians["spawn", "dma"] = (60, 11)
    medians["lock", "pio"] = (31, 10)
    assert cli._demo_verdicts(medians, 64) == [
        "notification: median 10 to 11 cycles (64 B, lock, branch and spawn, PIO and DMA): "
        "NOT met (target <= 10)",
        "one way: the target is for 8 B messages (run with --bytes 8)"]
    assert cli._demo_verdicts(medians, 8)[1].endswith("median 20 to 31 cycles (8 B PIO, lock, "
                                                      "branch and spawn): NOT met (target <= 30)")


@pytest.fixture(scope="module")
def pingpong_run(tmp_path_factory):
    """``smtni run examples/pingpong.toml`` on Icarus with ``--json``, ``--plot`` and an FST
    waveform (``--waves=fst``), once for the
    module: its status, its output, and the paths of the JSON and the picture it wrote."""
    directory = tmp_path_factory.mktemp("pingpong")
    run_json, picture = directory / "run.json", directory / "run.png"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = cli.main(["run", str(runner.PROJECT_ROOT / "examples" / "pingpong.toml"),
                           "--sim", "icarus", "--seed", "3", "--json", str(run_json),
                           "--plot", str(picture), "--waves=fst"])
    return status, out.getvalue(), run_json, picture


def test_run_writes_records_and_summary(pingpong_run):
    status, out, run_json, _ = pingpong_run
    assert status == 0, out
    result = json.loads(run_json.read_text())
    assert result["summary"]["mismatches"] == 0 and result["summary"]["delivered"] == 8
    assert result["summary"]["cycles_per_s"] > 0
    record = result["messages"][0]
    for key in ("id", "from", "to", "bytes", "send", "notify", "status", "t_doorbell",
                "t_first_flit", "t_last_flit_in", "t_completion", "t_notified", "t_handler"):
        assert key in record, record
    assert "seed 3" in out and "0 mismatches" in out
    # The view marks the first messages' stamps, A at the first message's doorbell.
    lines = open(out.split("GTKWave view: ")[1].strip()).read().splitlines()
    markers = next(line for line in lines if line.startswith("*")).split()[2:]
    assert int(markers[0]) == record["t_doorbell"] * gtkw.TICKS_PER_NS
    assert all(int(marker) > 0 for marker in markers[:24]), markers
    first = f"message {record['id']} t_doorbell (cycle {record['t_doorbell']})"
    assert f"[*] marker A: {first}" in lines


#: The stamps of a message's record (tb/system_tb.py) from doorbell to handler, and the stages a
#: timeline draws between them, named after the stamp each ends at.
STAMPS = ("t_doorbell", "t_first_flit", "t_first_flit_in", "t_last_flit_in", "t_completion",
          "t_notified", "t_handler")
STAGES = ("doorbell \u2192 first flit out", "\u2192 first flit in", "\u2192 last flit in",
          "\u2192 completion", "\u2192 notified", "\u2192 handler")


def png_size(path):
    """Return the width and height of the PNG at ``path`` (its IHDR chunk)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


def test_run_plots_every_message_stage_by_stage(pingpong_run, tmp_path):
    status, out, run_json, picture = pingpong_run
    assert f"timeline: {picture}: the stages of the first 8 messages; latencies of 8 (lock 4, " \
           f"none 4)" in out
    width, height = png_size(picture)
    assert 800 <= width <= 1600 and 300 <= height <= 1200, (width, height)
    assert picture.stat().st_size < 150_000
    records = json.loads(run_json.read_text())["messages"]
    drawn = plots.timeline(records, tmp_path / "again.png", messages=40, title="pingpong")
    assert drawn.messages == 8
    assert drawn.bars == {name: 8 for name in STAGES}
    assert drawn.histogram == Counter(record["notify"] for record in records) == {"lock": 4,
                                                                                 "none": 4}
    assert drawn.rows == ("client \u2192 server", "server \u2192 client")


def test_plot_draws_the_first_messages_and_counts_them_all(pingpong_run, capsys, tmp_path):
    picture = tmp_path / "timeline.png"
    status, out, _ = smtni(capsys, "plot", str(pingpong_run[2]), "-o", str(picture),
                           "--messages", "3")
    assert status == 0
    assert out == f"{picture}: the stages of the first 3 messages; latencies of 8 (lock 4, " \
                  f"none 4)\n"
    assert png_size(picture)[0] > 0


def test_timeline_lanes_and_stamps_missing_or_out_of_order(tmp_path):
    def record(id, start, to="b", notify="lock", **changed):
        stamped = {stamp: start + 10 * step for step, stamp in enumerate(STAMPS)}
        stamped.update(changed)
        return {"id": id, "from": "a", "to": to, "notify": notify,
                **{stamp: cycle for stamp, cycle in stamped.items() if cycle is not None}}

    records = [record(0, 100), record(1, 120, notify="spawn", t_notified=None),
               record(2, 500, t_notified=900), record(3, 110, to="c", notify="none"),
               record(4, 2000, to="c", notify="none"), {"id": 5, "from": "a", "to": "b",
                                                        "notify": "lock"}]
    drawn = plots.timeline(records, tmp_path / "t.png", messages=4, title="lanes")
    # The first 4 by doorbell: 0 and 1 overlap (two lanes), 2 takes the first lane again.
    assert drawn.messages == 4
    assert drawn.rows == ("a \u2192 b", "a \u2192 b", "a \u2192 c")
    # 1 has no t_notified and 2 one after its handler: each has one stage in place of two.
    assert drawn.bars == {**{name: 4 for name in STAGES[:4]}, STAGES[4]: 2, STAGES[5]: 2,
                          "stamp missing or out of order": 2}
    assert drawn.histogram == {"lock": 2, "spawn": 1, "none": 2}


@pytest.mark.parametrize("argv, fragments", [
    (["plot", "{tmp}/none.json"], ["cannot read {tmp}/none.json: No such file"]),
    (["plot", "{tmp}/scenario.toml"], ["{tmp}/scenario.toml is not JSON", "smtni run"]),
    (["plot", "{tmp}/summary.json"], ["{tmp}/summary.json has no per-message records",
                                       "smtni run SCENARIO --json"]),
    (["plot", "{tmp}/empty.json"], ["{tmp}/empty.json records no message"]),
    (["plot", "{tmp}/run.json", "-o", "{tmp}/no/t.png"],
     ["--output {tmp}/no/t.png: folder {tmp}/no does not exist"]),
    (["plot", "{tmp}/run.json", "-o", "{tmp}/t.svg"], ["{tmp}/t.svg", "ending in .png"]),
    (["plot", "{tmp}/run.json", "--messages", "0"], ["--messages: '0' is not a positive"]),
    (["run", str(runner.PROJECT_ROOT / "examples" / "pingpong.toml"), "--plot", "{tmp}/no/t.png"],
     ["--plot {tmp}/no/t.png: folder {tmp}/no does not exist"]),
])
def test_bad_plot_input_is_one_line_and_status_2(capsys, tmp_path, argv, fragments):
    (tmp_path / "scenario.toml").write_text("[system]\nnodes = 2\n")
    (tmp_path / "summary.json").write_text(json.dumps({"delivered": 8, "mismatches": 0}))
    (tmp_path / "empty.json").write_text(json.dumps({"messages": [], "summary": {}}))
    (tmp_path / "run.json").write_text(json.dumps({"messages": [
        {"id": 0, "from": "a", "to": "b", "notify": "lock", "t_doorbell": 5}]}))
    status, _, err = smtni(capsys, *(arg.format(tmp=tmp_path) for arg in argv))
    assert_one_line_error(status, err, *(text.format(tmp=tmp_path) for text in fragments))
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.svg"))


@pytest.mark.parametrize("text, fragments", [
    ("[system]\nnodes = 2\n", ["'process' is missing"]),
    ("[system\n", ["is not valid TOML"]),
    ('[[process]]\nname = "a"\nnode = 0\nwindow = { va = 0, bytes = 64 }\n'
     '[[traffic]]\npattern = "ring"\n', ["pattern = 'ring'; choose one of pingpong"]),
    ('[system.params]\nsend_buffering = 99\n[[process]]\nname = "a"\nnode = 0\n'
     'window = { va = 0, bytes = 64 }\n[[traffic]]\npattern = "list"\nmessages = []\n',
     ["send_buffering must be between 1 and 16, not 99"]),
    ('[[process]]\nname = "a"\nnode = 0\nwindow = { va = 0x20000000, bytes = 64 }\n'
     '[[traffic]]\npattern = "list"\nmessages = []\n',
     ["process 'a': window 0x20000000 + 64 bytes and send_buffer 0x20000000",
      "move one of them"]),
])
def test_bad_scenario_is_one_line_and_status_2(capsys, tmp_path, text, fragments):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    status, _, err = smtni(capsys, "run", str(path))
    assert_one_line_error(status, err, *fragments)


def test_missing_scenario_is_one_line_and_status_2(capsys):
    status, _, err = smtni(capsys, "run", "/no/such/scenario.toml")
    assert_one_line_error(status, err, "cannot read scenario /no/such/scenario.toml")


from rtl import components


def test_components_refuse_an_unknown_parameter_naming_the_known_ones():
    with pytest.raises(ValueError, match="fabric has no parameter 'speed'; its parameters are "
                                         "nodes=2"):
        components.elaborate("fabric", {"speed": 3})


def test_component_verilog_has_no_source_paths_and_the_system_one_ni_module():
    assert "src =" not in components.to_verilog("arbiter")
    text = components.to_verilog("system", {"nodes": 2})
    assert text.count("module system_ni(") == 1 and "module system(" in text


@pytest.mark.parametrize("argv, waves", [
    (["run", "--waves", "x.toml"], "vcd"), (["run", "x.toml", "--waves"], "vcd"),
    (["run", "--waves", "fst", "x.toml"], "fst"), (["run", "--waves=fst", "x.toml"], "fst"),
    (["run", "x.toml"], None)])
def test_waves_before_a_scenario_is_not_its_format(argv, waves):
    """A bare ``--waves`` means VCD wherever it stands; a format follows it only if named."""
    args = cli._parser().parse_args(cli._bare_waves(argv))
    assert (args.waves, args.scenario) == (waves, "x.toml")
