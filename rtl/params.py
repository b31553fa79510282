"""Checking of elaboration parameters, shared by every component."""

from amaranth.hdl import Elaboratable
from amaranth.lib.wiring import In

from .layouts import NODE_BITS

__all__ = ["check_int", "check_node", "node_strap", "node_number", "silence_unused"]


def check_int(component, name, value, low, high):
    """Return ``value`` if it is an integer in ``low..high``; else raise naming it.

    Raises :exc:`TypeError` for a non-integer and :exc:`ValueError` for one out of range. The
    half-built ``component`` is marked so that Amaranth does not also warn that it was never
    elaborated.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        error = TypeError(f"{name} must be an integer, not {value!r}")
    elif not low <= value <= high:
        error = ValueError(f"{name} must be between {low} and {high}, not {value}")
    else:
        return value
    silence_unused(component)
    raise error


def check_node(component, node, high):
    """Return ``node`` if it is None (the node number comes in on a strap port) or an integer
    in ``0..high``; else raise as :func:`check_int` does."""
    return None if node is None else check_int(component, "node", node, 0, high)


def node_strap(node):
    """Return the signature members a component with ``node`` has for its node number: the strap
    port ``node_id`` (``In(NODE_BITS)``, to be tied to a constant) when ``node`` is None, so
    that one module serves every node of a system; nothing when the number is built in."""
    return {"node_id": In(NODE_BITS)} if node is None else {}


def node_number(component):
    """Return the node number of a component with a ``node`` parameter, for ``elaborate``: the
    constant, or the ``node_id`` strap."""
    return component.node_id if component.node is None else component.node


def silence_unused(component):
    """Mark ``component``, and the parts it built (elaboratables among its attributes), so that
    Amaranth does not warn when they are never elaborated (it was built only to check its
    parameters, or its constructor failed)."""
    component._MustUse__silence = True
    for part in vars(component).values():
        if isinstance(part, Elaboratable) and not getattr(part, "_MustUse__silence", False):
            silence_unused(part)
