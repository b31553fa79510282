"""Scenario files: parsing, the traffic patterns, and one-line errors naming the bad value."""

import tomllib

import pytest

from behavioral.scenario import ScenarioError, parse
from rtl.layouts import NotifyMode

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


def test_landing_places_follow_each_other_and_wrap():
    s = scenario('[[traffic]]\npattern = "stream"\nfrom = "client"\nto = "server"\n'
                 'bytes = 1536\ncount = 4\n')
    assert [m.va_offset for m in s.messages] == [0, 1536, 0, 1536]
    assert all(m.key == 0x1234 for m in s.messages)


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
