"""FuseSoC cores of the components: ``smtni verilog COMPONENT --fusesoc`` writes one beside the
Verilog, so that a FuseSoC user can lint the component or build it into a design of their own.

The core (CAPI2) is named ``smtni:smtni:COMPONENT:VERSION``. Its ``lint`` target runs Verilator
in lint-only mode with the project's own lint (``-Wall`` and the waivers of
``rtl/lint_waivers.vlt``, copied beside the core); its ``sim`` target compiles the Verilog with
Icarus in Verilog-2005 mode, as the testbenches' builds do (:class:`tb.runner._Icarus` says why).
"""

import shutil
from pathlib import Path

import yaml

from .runner import LINT_WAIVERS

__all__ = ["write_core", "core_name", "LINT_OPTIONS"]

VERSION = "0.1.0"
#: Verilator's lint options: those of the project's lint (tests/test_verilog_quality.py).
LINT_OPTIONS = ["-Wall"]


def core_name(component):
    """Return the VLNV of ``component``'s core."""
    return f"smtni:smtni:{component}:{VERSION}"


def write_core(component, verilog):
    """Write ``COMPONENT.core`` and the lint waivers beside the Verilog file ``verilog`` (whose
    top module is ``component``); return the core's path."""
    verilog = Path(verilog)
    shutil.copyfile(LINT_WAIVERS, verilog.parent / LINT_WAIVERS.name)
    core = {
        "name": core_name(component),
        "description": f"smtni {component}, Verilog generated from its Amaranth description",
        "filesets": {
            "rtl": {"files": [verilog.name], "file_type": "verilogSource"},
            "lint_waivers": {"files": [LINT_WAIVERS.name], "file_type": "vlt"},
        },
        "targets": {
            "default": {"filesets": ["rtl"], "toplevel": component},
            "lint": {
                "description": "Verilator's lint with the project's warnings and waivers",
                # The waivers first: Verilator applies a control file to the files after it.
                "filesets": ["lint_waivers", "rtl"],
                "toplevel": component,
                "default_tool": "verilator",
                "tools": {"verilator": {"mode": "lint-only", "verilator_options": LINT_OPTIONS}},
            },
            "sim": {
                "filesets": ["rtl"],
                "toplevel": component,
                "default_tool": "icarus",
                "tools": {"icarus": {"iverilog_options": ["-g2005"]}},
            },
        },
    }
    path = verilog.with_suffix(".core")
    path.write_text("CAPI=2:\n" + yaml.safe_dump(core, sort_keys=False))
    return path
