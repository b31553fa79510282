"""``make bench``'s table and targets (tb.bench), with the measurements stubbed: the measuring
itself runs under ``make bench`` (minutes of builds and runs)."""

from tb import bench


def test_table_and_targets(monkeypatch, capsys):
    monkeypatch.setattr(bench, "fresh_build_seconds", lambda params, sim: 40.0 * params["nodes"])
    monkeypatch.setattr(bench, "clock_only", lambda component, params, sim, cycles:
                        {2: 60_000, 4: 25_000}.get(params.get("nodes"), 400_000))
    monkeypatch.setattr(bench, "native", lambda params, cycles: (110_000, 30.0))
    monkeypatch.setattr(bench, "demo_speed", lambda sim, seed: 21_000)
    monkeypatch.setattr(bench, "random_speed", lambda sim, seed, messages: 5_000)
    bench.main(["--sim", "verilator", "--messages", "10"])
    out = capsys.readouterr().out
    assert "verilator  2-node demo (8 ping-pong runs)                   21000            35%" in out
    assert "4-node random, 10 messages" in out
    assert "verilator      4      160" in out and "native         2       30" in out
    assert "met      cocotb clock-only >= 50 % of the native harness: 55%" in out
    assert "met      2-node demo >= 20,000 cycles/s: 21,000" in out
    assert "not met  2-node demo >= 50 % of clock-only: 35%" in out
    assert "not met  4-node build <= 120 s: 160 s" in out
