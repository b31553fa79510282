"""Every component's Verilog lints clean on Verilator (-Wall, with the documented waivers) and
compiles on Icarus."""

import subprocess

import pytest

from rtl import components
from tb.runner import LINT_WAIVERS, verilator_root, write_verilog

# Each listed component with its defaults, plus parameter corners that change the logic.
CASES = [(name, {}) for name in sorted(components.COMPONENTS)] + [
    ("fabric", dict(nodes=3, link_latency=0, cycles_per_flit=3)),
    ("fabric", dict(nodes=16, link_latency=4)),
    ("fabric", dict(nodes=2, cycles_per_flit=3, max_cycles_per_flit=256)),
    ("arbiter", dict(count=2)),
    ("arbiter", dict(count=7)),
    ("locktable", dict(entries=2, waiters=1, contexts=1, count_bits=1)),
    ("locktable", dict(entries=5, waiters=7, contexts=8, count_bits=16)),
    ("notifier", dict(endpoints=1, contexts=1, queue_depth=1)),
    ("notifier", dict(endpoints=16, contexts=8, queue_depth=3)),
    ("sendchecker", dict(node=None, nodes=16, asid_bits=1)),
    ("fetcher", dict(send_buffering=1)),
    ("fetcher", dict(send_buffering=16)),
    ("translator", dict(asid_bits=1)),
    ("receiver", dict(node=None, endpoints=16, asid_bits=1)),
    ("writer", dict(endpoints=1)),
    ("mmio", dict(node=None, endpoints=1, contexts=1)),
    ("mmio", dict(endpoints=16, contexts=8)),
    ("osport", dict(endpoints=1, contexts=1, asid_bits=1)),
    ("osport", dict(endpoints=16, contexts=8, asid_bits=8)),
    ("osport", dict(send_buffering=16, cycles_per_flit=2, max_cycles_per_flit=32)),
]


@pytest.mark.parametrize("name, params", CASES, ids=lambda x: str(x))
def test_verilog_lints_and_compiles(name, params, tmp_path):
    source = write_verilog(name, params, tmp_path / f"{name}.v")
    verilator = verilator_root() / "bin" / "verilator"
    lint = subprocess.run([str(verilator), "--lint-only", "-Wall", str(LINT_WAIVERS), str(source)],
                          capture_output=True, text=True)
    assert lint.returncode == 0 and "%Warning" not in lint.stderr, lint.stderr[:3000]
    icarus = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "a.out"), str(source)],
                            capture_output=True, text=True)
    assert icarus.returncode == 0 and not icarus.stderr, icarus.stderr


def test_every_listed_component_is_checked():
    assert {name for name, _ in CASES} == set(components.COMPONENTS)
