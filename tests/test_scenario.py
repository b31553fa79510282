"""Scenario files: parsing, the traffic patterns, and one-line errors naming the bad value."""

import tomllib

import pytest

from behavioral.scenario import ScenarioError, parse
from rtl.layouts import MAX_NODES, NotifyMode
from tb import cli, runner

BASE = """
[system]
nodes = 2
[[process]]
name = "server"
node = 1
notify = "lock"
window = { va = 0x10000000, bytes = 4096, key = 0x1234 }
[[process]]
name = "client"
node = 0
endpoint = 2
window = { va = 0x10000000, bytes = 4096, key = 0x99 }
"""


def scenario(traffic, base=BASE, **kwargs):
    return parse(tomllib.loads(base + traffic), **kwargs)


def test_pingpong_alternates_and_waits_for_the_answer():
    s = scenario('[[traffic]]\npattern = "pingpong"\nfrom = "client"\nto = "server"\n'
                 'bytes = 64\ncount = 2\nsend = "dma"\n')
    assert [(m.src, m.dst, m.after) for m in s.messages] == [
        ("client", "server", None), ("server", "client", 0),
        ("client", "server", 1), ("server", "client", 2)]
    assert all(m.send == "dma" and m.notify for m in s.messages)
    assert s.processes["server"].notify is NotifyMode.LOCK
    assert s.processes["client"].notify is NotifyMode.NONE
    assert s.program("client") == [("send", s.messages[0]), ("consume", 1),
                                   ("send", s.messages[2])]
    assert s.program("server") == [("consume", 0), ("send", s.messages[1]),
                                   ("consume", 2), ("send", s.messages[3])]


def test_gap_is_computed_before_each_send_of_its_entry():
    s = scenario('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 8\n'
                 'count = 3\ngap = 400\n[[traffic]]\npattern = "list"\ngap = 20\n'
                 'messages = [{ from = "server", to = "client", bytes = 8 }]\n')
    assert [m.gap for m in s.messages] == [400, 400, 400, 20]
    assert scenario('[[traffic]]\npattern = "random"\nbytes = 8\n').messages[0].gap == 0


def test_landing_places_follow_each_other_and_wrap():
    s = scenario('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\n'
                 'bytes = 1536\ncount = 4\n')
    assert [m.va_offset for m in s.messages] == [0, 1536, 0, 1536]
    assert all(m.key == 0x1234 for m in s.messages)


def test_align_packs_landing_places_and_ring_sets_the_ring():
    """``align`` = 8: 8-byte messages land one word after the other (the default: each at the
    next line); a process's ``ring`` is the entries of its completion ring (default 16)."""
    s = scenario('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\n'
                 'bytes = 8\nalign = 8\ncount = 3\n[[traffic]]\npattern = "stream"\n'
                 'from = "client"\nto = "server"\nbytes = 8\ncount = 2\n',
                 base=BASE.replace('notify = "lock"', 'notify = "lock"\nring = 256'))
    assert [m.va_offset for m in s.messages] == [0, 8, 16, 64, 128]
    assert (s.processes["server"].ring, s.processes["client"].ring) == (256, 16)


def test_random_is_drawn_from_the_seed_and_never_to_self():
    text = '[[traffic]]\npattern = "random"\nbytes = 8\ncount = 50\n'
    first, again = scenario(text, seed=7), scenario(text, seed=7)
    assert [(m.src, m.dst) for m in first.messages] == [(m.src, m.dst) for m in again.messages]
    assert all(m.src != m.dst for m in first.messages)
    assert {m.src for m in first.messages} == {"client", "server"}


def test_list_messages_may_be_bad_on_purpose():
    s = scenario('[[traffic]]\npattern = "list"\nmessages = [{ from = "client", to = "server", '
                 'bytes = 8, va_offset = 0x2000, key = 0x9999, send = "dma" }]\n')
    message, = s.messages
    assert (message.va_offset, message.key, message.send) == (0x2000, 0x9999, "dma")


@pytest.mark.parametrize("traffic, error", [
    ('[[traffic]]\npattern = "ring"\n', "pattern = 'ring'; choose one of pingpong"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "nobody"\nbytes = 8\n',
     "to = 'nobody' is no process"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 12\n',
     "bytes = 12 must be a multiple of 8"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 4096\n',
     "bytes = 4096 is out of range 0..2048"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "client"\nbytes = 8\n',
     "from and to are both 'client'"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 8\nsend = "x"\n',
     "send = 'x'; choose one of pio, dma"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 8\ncolour = 1\n',
     "unknown key 'colour'"),
    ('[[traffic]]\npattern = "list"\n', "a list pattern needs messages"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 8\nalign = 24\n',
     "align = 24 must be a power of two, 8 to 4096 bytes"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 8\nalign = 4\n',
     "align = 4 is out of range 8..4096"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 8\ngap = -1\n',
     "gap = -1 is out of range 0..16777216"),
])
def test_bad_traffic_is_named(traffic, error):
    with pytest.raises(ScenarioError, match=error.replace("(", r"\(").replace(".", r"\.")):
        scenario(traffic)


@pytest.mark.parametrize("change, error", [
    (("nodes = 2", "nodes = 1"), "nodes = 1 is out of range 2..16"),
    (('notify = "lock"', 'notify = "irq"'), "notify = 'irq'; choose one of none, lock"),
    (("node = 1", "node = 2"), "node = 2 is out of range 0..1"),
    (("endpoint = 2", "endpoint = 0"), "endpoint 0 of node 0"),
    (("va = 0x10000000, bytes = 4096, key = 0x99", "va = 0x10000004, bytes = 4096"),
     "va = 0x10000004 must be a multiple of 64"),
    # The default send buffer is 8 KiB at 0x20000000: a window's last page on its first one.
    (("va = 0x10000000, bytes = 4096, key = 0x99", "va = 0x1FFFF000, bytes = 8192"),
     r"window 0x1ffff000 \+ 8192 bytes and send_buffer 0x20000000 \+ 8192 bytes share the "
     r"page at 0x20000000"),
    (("window = { va = 0x10000000, bytes = 4096, key = 0x99 }",
      "window = { va = 0x10000000, bytes = 4096, key = 0x99 }\n"
      "send_buffer = { va = 0x10000fc0, bytes = 64 }"), "share the page at 0x10000000"),
    (("va = 0x10000000, bytes = 4096, key = 0x99", "va = 0x6FFFFFFFF000, bytes = 8192"),
     "reaches 0x700000000000, where the OS puts the completion rings"),
    (('notify = "lock"', 'notify = "lock"\nring = 48'),
     "ring = 48 must be a power of two"),
    (('notify = "lock"', 'notify = "lock"\nring = 2048'), "ring = 2048 is out of range 1..1024"),
])
def test_bad_processes_are_named(change, error):
    base = BASE.replace(*change, 1) if change[0] != "endpoint = 2" else \
        BASE.replace("endpoint = 2", "endpoint = 0").replace('node = 1', 'node = 0', 1)
    with pytest.raises(ScenarioError, match=error):
        scenario('[[traffic]]\npattern = "random"\nbytes = 8\n', base=base)


def test_unknown_system_parameter_is_named():
    with pytest.raises(ScenarioError, match="unknown key 'colour'; allowed: link_latency"):
        scenario('[[traffic]]\npattern = "random"\nbytes = 8\n',
                 base=BASE.replace("nodes = 2", "nodes = 2\n[system.params]\ncolour = 3"))


# Checks against the System, the nodes and the workload: what `smtni run` plans (tb.cli.plan) ---

def process(name, node, endpoint, window="{ va = 0x10000000, bytes = 4096 }", extra=""):
    return (f'[[process]]\nname = "{name}"\nnode = {node}\nendpoint = {endpoint}\n'
            f"window = {window}\n{extra}")


def planned(text, seed=0):
    return cli.plan(tomllib.loads(text), seed=seed)


@pytest.mark.parametrize("text, error", [
    ("[system]\nnodes = 17\n" + process("a", 0, 0) + process("b", 1, 0),
     f"[system]: nodes = 17 is out of range 2..{MAX_NODES}"),
    ("[system.params]\nendpoints = 2\n" + "".join(process(n, 0, e) for e, n in enumerate("abc")),
     "process 'c': node 0 has 3 processes, more than its 2 endpoints; raise [system.params] "
     "endpoints"),
    ("[system.params]\nendpoints = 2\n" + process("a", 0, 2),
     "process 'a': endpoint = 2 is out of range 0..1"),
    ("[system.params]\nasid_bits = 1\n" + process("a", 0, 0) + process("b", 0, 1),
     "process 'b': node 0 has 2 processes, more than the 1 ASIDs of asid_bits = 1; raise "
     "[system.params] asid_bits"),
    ("[system.params]\nsend_buffering = 0\n" + process("a", 0, 0),
     "[system.params]: send_buffering must be between 1 and 16, not 0 (the System of nodes = 2, "
     "send_buffering = 0); change the value it names"),
    ("[system.params]\nlines = 8\ntx_lines = 8\n" + process("a", 0, 0),
     "[system.params]: tx_lines must be between 1 and 6, not 8"),
    # 3 GiB of window and 1 GiB of send buffer: more than the node's 4 GiB less the kernel's.
    (process("a", 0, 0, "{ va = 0, bytes = 0xC0000000 }",
             "send_buffer = { va = 0xC0000000, bytes = 0x40000000 }\n"),
     "process 'a': the processes of node 0 need 1048577 pages of memory (windows, send buffers, "
     "rings), more than its 1048320; make the windows or send buffers smaller"),
    ("[system]\nnodes = 16\n[system.params]\nendpoints = 8\n"
     + "".join(process(f"p{i}", i // 8, i % 8) for i in range(128)),
     "process 'p127': a scenario has at most 127 processes (the workload's thread numbers); "
     "declare fewer"),
])
def test_what_the_run_would_refuse_is_refused_when_read(text, error):
    with pytest.raises(ScenarioError) as refusal:
        planned(text + '[[traffic]]\npattern = "list"\nmessages = []\n')
    assert str(refusal.value).startswith(error) and "\n" not in str(refusal.value)


def test_up_to_the_limits_a_scenario_plans():
    # 127 processes (as many as the thread numbers allow), 16 on a node; a 2 GiB window.
    s = planned("[system]\nnodes = 8\n[system.params]\nendpoints = 16\n"
                + "".join(process(f"p{i}", i // 16, i % 16) for i in range(127))
                + '[[traffic]]\npattern = "random"\nbytes = 8\n')
    assert len(s.processes) == 127 and s.processes["p126"].endpoint == 14
    big = planned(process("a", 0, 0, "{ va = 0x40000000, bytes = 0x80000000 }") + process("b", 1, 0)
                  + '[[traffic]]\npattern = "random"\nbytes = 8\n')
    assert big.processes["a"].window.bytes == 1 << 31


@pytest.mark.parametrize("traffic, error", [
    ('[[traffic]]\npattern = "stream"\nfrom = ["client"]\nto = "server"\nbytes = 8\n',
     "[[traffic]] #1: from = ['client'] is no process"),
    ('[[traffic]]\npattern = "list"\nmessages = [{ from = "client", to = { name = "server" }, '
     'bytes = 8 }]\n', "[[traffic]] #1 message #1: to = {'name': 'server'} is no process"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 2048\n',
     "[[traffic]] #1: bytes = 2048 does not fit process 'server''s window of 1024 bytes"),
    ('[[traffic]]\npattern = "list"\ncount = 3\nmessages = []\n',
     "[[traffic]] #1: count = 3 does nothing in a list pattern"),
    ('[[traffic]]\npattern = "list"\nmessages = [{ from = "client", to = "server", bytes = 8, '
     'flags = 0x100 }]\n', "flags = 256 is out of range 0..255"),
    ('[[traffic]]\npattern = "list"\nmessages = [{ from = "client", to = "server", bytes = 8, '
     'length = 4096 }]\n', "length = 4096 is out of range 0..4095"),
    ('[[traffic]]\npattern = "list"\nmessages = [{ from = "client", to = "server", bytes = 8, '
     'dst_node = 16 }]\n', "dst_node = 16 is out of range 0..15"),
    ('[[traffic]]\npattern = "list"\nmessages = [{ from = "client", to = "server", bytes = 8, '
     'endpoint = 16 }]\n', "endpoint = 16 is out of range 0..15"),
    ('[[traffic]]\npattern = "list"\nmessages = [{ from = "client", to = "server", bytes = 8, '
     'local_va = 0x1000000000000 }]\n', "local_va = 0x1000000000000 is out of range"),
    ('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\nbytes = 1024\n'
     'send = "dma"\n', "a DMA send of 1024 bytes does not fit process 'client''s send buffer "
     "of 64 bytes"),
])
def test_bad_messages_are_named(traffic, error):
    base = BASE.replace("bytes = 4096, key = 0x1234", "bytes = 1024, key = 0x1234").replace(
        "key = 0x99 }", "key = 0x99 }\nsend_buffer = { va = 0x20000000, bytes = 64 }")
    with pytest.raises(ScenarioError) as refusal:
        planned(base + traffic)
    assert error in str(refusal.value)


def test_a_dma_send_from_elsewhere_needs_no_send_buffer_room():
    s = scenario('[[traffic]]\npattern = "list"\nmessages = [{ from = "client", to = "server", '
                 'bytes = 2048, send = "dma", local_va = 0x30000000 }]\n',
                 base=BASE.replace("key = 0x99 }", "key = 0x99 }\n"
                                   "send_buffer = { va = 0x20000000, bytes = 64 }"))
    assert s.messages[0].local_va == 0x30000000


def test_a_refused_scenario_exits_2_before_anything_is_built(tmp_path, monkeypatch, capsys):
    def build(*args, **kwargs):
        raise AssertionError("built a bad scenario")
    monkeypatch.setattr(runner, "build", build)
    path = tmp_path / "bad.toml"
    path.write_text("[system.params]\nasid_bits = 1\n" + process("a", 0, 0) + process("b", 0, 1)
                    + '[[traffic]]\npattern = "list"\nmessages = []\n')
    assert cli.main(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1
    assert err.startswith(f"smtni: scenario {path}: process 'b': node 0 has 2 processes")


def test_compute_threads_are_one_per_node_with_their_instructions():
    planned = scenario('[[traffic]]\npattern = "random"\nbytes = 8\n'
                       '[[compute]]\nnode = 1\n[[compute]]\nnode = 0\ninstructions = 500\n')
    assert planned.compute == {1: 64, 0: 500} and planned.compute_lines == {}
    assert scenario('[[traffic]]\npattern = "random"\nbytes = 8\n').compute == {}
    planned = scenario('[[traffic]]\npattern = "random"\nbytes = 8\n'
                       '[[compute]]\nnode = 1\nlines = 4096\n')
    assert planned.compute == {1: 64} and planned.compute_lines == {1: 4096}


def test_system_memory_sets_every_node_hierarchy_and_bad_values_are_named():
    base = BASE.replace("nodes = 2\n", "nodes = 2\nmemory = { l2_bytes = 65536, l2_ways = 4 }\n")
    traffic = '[[traffic]]\npattern = "random"\nbytes = 8\n'
    assert scenario(traffic, base=base).memory == {"l2_bytes": 65536, "l2_ways": 4}
    assert scenario(traffic).memory == {}
    with pytest.raises(ScenarioError,
                       match=r"^\[system.memory\]: cache l2: size_bytes 65000 must be"):
        scenario(traffic, base=base.replace("65536", "65000"))
    with pytest.raises(ScenarioError, match=r"^\[system.memory\]: unknown key 'l3_bytes'"):
        scenario(traffic, base=base.replace("l2_ways", "l3_bytes"))


@pytest.mark.parametrize("compute, error", [
    ("[[compute]]\nnode = 2\n", r"\[\[compute\]\] #1: node = 2 is out of range 0..1"),
    ("[[compute]]\nnode = 0\n[[compute]]\nnode = 0\n",
     r"\[\[compute\]\] #2: node 0 has a compute thread already; give one per node"),
    ("[[compute]]\nnode = 0\ninstructions = 0\n", "instructions = 0 is out of range 1..1048576"),
    ("[[compute]]\ninstructions = 8\n", "'node' is missing"),
    ("[[compute]]\nnode = 0\nthreads = 2\n",
     "unknown key 'threads'; allowed: node, instructions, lines"),
    ("[[compute]]\nnode = 0\nlines = 262145\n", "lines = 262145 is out of range 0..262144"),
])
def test_bad_compute_threads_are_named(compute, error):
    with pytest.raises(ScenarioError, match=error):
        scenario(compute + '[[traffic]]\npattern = "random"\nbytes = 8\n')


def test_compute_must_be_an_array_of_tables():
    document = tomllib.loads(BASE + '[[traffic]]\npattern = "random"\nbytes = 8\n')
    with pytest.raises(ScenarioError, match=r"\[\[compute\]\] must be an array of tables"):
        parse({**document, "compute": 3})


def test_a_compute_thread_needs_an_asid_of_its_node():
    # asid_bits = 1: one ASID a node, taken by the node's process
    base = BASE.replace("nodes = 2", "nodes = 2\n[system.params]\nasid_bits = 1")
    with pytest.raises(ScenarioError, match="node 1 has 1 processes and no ASID left of "
                                            "asid_bits = 1 for the compute thread"):
        scenario('[[traffic]]\npattern = "random"\nbytes = 8\n[[compute]]\nnode = 1\n', base=base)


def test_tune_sets_what_the_os_tunes_up_to_the_systems_parameter():
    base = BASE.replace("nodes = 2", "nodes = 2\n[system.params]\nsend_buffering = 6\n"
                                     "[system.tune]\nsend_buffering = 6")
    assert scenario('[[traffic]]\npattern = "random"\nbytes = 8\n', base=base).tune == {
        "send_buffering": 6}
    with pytest.raises(ScenarioError, match=r"\[system.tune\]: send_buffering = 7 is out of "
                                            r"range 1..6"):
        scenario('[[traffic]]\npattern = "random"\nbytes = 8\n',
                 base=base.replace("send_buffering = 6\n[[", "send_buffering = 7\n[[", 1)
                 .replace("[system.tune]\nsend_buffering = 6", "[system.tune]\nsend_buffering = 7"))
    with pytest.raises(ScenarioError, match=r"\[system.tune\]: unknown key 'link'; allowed: "
                                            r"send_buffering, cycles_per_flit"):
        scenario('[[traffic]]\npattern = "random"\nbytes = 8\n',
                 base=BASE.replace("nodes = 2", "nodes = 2\n[system.tune]\nlink = 2"))


def test_tune_is_bounded_by_the_built_system_when_smtni_plans_it():
    base = BASE.replace("nodes = 2", "nodes = 2\n[system.tune]\nsend_buffering = 5")
    with pytest.raises(ScenarioError, match=r"send_buffering = 5 is out of range 1..4"):
        cli.plan(tomllib.loads(base + '[[traffic]]\npattern = "random"\nbytes = 8\n'), seed=1)


def test_the_link_rate_is_tuned_only_in_a_system_built_to_allow_it():
    traffic = '[[traffic]]\npattern = "random"\nbytes = 8\n'
    tuned = BASE.replace("nodes = 2", "nodes = 2\n[system.params]\nmax_cycles_per_flit = 32\n"
                                      "[system.tune]\ncycles_per_flit = 32")
    assert cli.plan(tomllib.loads(tuned + traffic), seed=1).tune == {"cycles_per_flit": 32}
    with pytest.raises(ScenarioError, match=r"cycles_per_flit = 33 is out of range 1..32"):
        cli.plan(tomllib.loads(tuned.replace("tune]\ncycles_per_flit = 32",
                                             "tune]\ncycles_per_flit = 33") + traffic), seed=1)
    fixed = BASE.replace("nodes = 2", "nodes = 2\n[system.tune]\ncycles_per_flit = 4")
    with pytest.raises(ScenarioError, match=r"^\[system.tune\]: cycles_per_flit = 4, but the "
                                            r"System's rate is fixed; set \[system.params\] "
                                            r"max_cycles_per_flit to the slowest rate to tune to$"):
        cli.plan(tomllib.loads(fixed + traffic), seed=1)


def test_payload_places_a_dma_payload_and_is_refused_where_it_does_nothing():
    planned = scenario('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\n'
                       'bytes = 64\nsend = "dma"\npayload = "mixed"\ncount = 2\n')
    assert [message.payload for message in planned.messages] == ["mixed", "mixed"]
    assert scenario('[[traffic]]\npattern = "random"\nbytes = 8\n').messages[0].payload == "cache"
    with pytest.raises(ScenarioError, match="payload = 'disk'; choose one of cache, dram, mixed"):
        scenario('[[traffic]]\npattern = "random"\nbytes = 8\nsend = "dma"\npayload = "disk"\n')
    with pytest.raises(ScenarioError, match="payload = 'dram' places a DMA send's payload in its "
                                            "send buffer; it does nothing for this send"):
        scenario('[[traffic]]\npattern = "random"\nbytes = 8\npayload = "dram"\n')
