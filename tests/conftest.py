import os
import random

import pytest


def pytest_addoption(parser):
    parser.addoption("--seed", type=int, default=None,
                     help="seed of the randomized cocotb tests (default: $SMTNI_SEED or random)")


def _session_seed(config):
    seed = config.getoption("--seed")
    if seed is None and os.environ.get("SMTNI_SEED"):
        seed = int(os.environ["SMTNI_SEED"])
    if seed is None:
        seed = random.randrange(1 << 31)
    return seed


def pytest_configure(config):
    # Workers of pytest-xdist inherit the controller's seed through the environment.
    if "SMTNI_SEED" not in os.environ or config.getoption("--seed") is not None:
        os.environ["SMTNI_SEED"] = str(_session_seed(config))


#: Modules whose tests take minutes, slowest first: collected before the others, so that
#: pytest-xdist starts them first and the quick tests fill in around them, rather than one worker
#: running a long test at the end while the other waits.
SLOW_FIRST = ("test_formal.py", "test_soak.py", "test_msgbuf_cocotb.py", "test_system_cocotb.py",
              "test_locktable_cocotb.py", "test_cli.py", "test_notifier_cocotb.py",
              "test_fabric_cocotb.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: index for index, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))


def pytest_report_header(config):
    seed = os.environ["SMTNI_SEED"]
    return f"smtni seed: {seed} (replay with: make test PYTEST_ARGS='--seed {seed}')"


@pytest.fixture
def seed():
    """The seed of randomized simulations; printed, and named in every failure message."""
    value = int(os.environ["SMTNI_SEED"])
    print(f"seed {value}")
    return value
