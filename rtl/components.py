"""The components that stand alone: each has its own Verilog and its own testbench."""

import inspect

from amaranth.back import verilog

from .arbiter import RoundRobinArbiter
from .axi import AxiLiteTarget, NetworkInterfaceAXI, NetworkInterfacesAXI, UserPageBridge
from .fabric import Fabric
from .faults import LinkFaultInjector
from .fetcher import PayloadFetcher
from .framing import MessageFramer
from .locktable import LockTable
from .mmio import MmioDecoder
from .msgbuf import MessageBuffer
from .ni import NetworkInterface, System
from .notifier import Notifier
from .osport import OsPort
from .packetqueue import PacketQueue
from .receiver import MessageReceiver
from .rxengine import RxEngine
from .params import silence_unused
from .sendchecker import SendChecker
from .tlb import NITLB
from .translator import RxTranslator
from .txengine import TxEngine
from .writer import MessageWriter

__all__ = ["COMPONENTS", "parameters", "elaborate", "check", "to_verilog"]

#: Name used on the command line and as the Verilog top module -> component class.
COMPONENTS = {
    "fabric": Fabric,
    "arbiter": RoundRobinArbiter,
    "tlb": NITLB,
    "msgbuf": MessageBuffer,
    "locktable": LockTable,
    "notifier": Notifier,
    "framer": MessageFramer,
    "sendchecker": SendChecker,
    "fetcher": PayloadFetcher,
    "txengine": TxEngine,
    "receiver": MessageReceiver,
    "translator": RxTranslator,
    "packetqueue": PacketQueue,
    "writer": MessageWriter,
    "rxengine": RxEngine,
    "mmio": MmioDecoder,
    "osport": OsPort,
    "ni": NetworkInterface,
    "ni_axi": NetworkInterfaceAXI,
    "ni_axi_nodes": NetworkInterfacesAXI,
    "axil_target": AxiLiteTarget,
    "user_bridge": UserPageBridge,
    "system": System,
    "linkfault": LinkFaultInjector,
}


def _component_class(name):
    try:
        return COMPONENTS[name]
    except KeyError:
        raise ValueError(f"unknown component {name!r}; choose one of "
                         f"{', '.join(sorted(COMPONENTS))}") from None


def parameters(name):
    """Return the elaboration parameters of component ``name`` with their defaults."""
    signature = inspect.signature(_component_class(name).__init__)
    return {param.name: param.default for param in signature.parameters.values()
            if param.kind is inspect.Parameter.KEYWORD_ONLY}


def elaborate(name, params=None):
    """Return component ``name`` built with ``params`` (a dict; missing ones take defaults).

    Raises
    ------
    :exc:`ValueError`
        If the component or a parameter name is unknown, or a value is out of range.
    :exc:`TypeError`
        If a value has the wrong type.
    """
    params = dict(params or {})
    known = parameters(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{name} has no parameter {unknown[0]!r}; its parameters are "
                         f"{', '.join(f'{key}={value}' for key, value in known.items())}")
    return _component_class(name)(**params)


def check(name, params=None):
    """Raise as :func:`elaborate` does if ``params`` do not build component ``name``."""
    silence_unused(elaborate(name, params))


def to_verilog(name, params=None):
    """Return the Verilog of component ``name``; the top module is called ``name``.

    A component that writes its own Verilog (:meth:`rtl.ni.System.to_verilog`: one NI module for
    every node) does so."""
    component = elaborate(name, params)
    if hasattr(component, "to_verilog"):
        return component.to_verilog(name)
    return verilog.convert(component, name=name, emit_src=False)
