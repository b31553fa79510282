"""Checking of elaboration parameters, shared by every component."""

__all__ = ["check_int", "silence_unused"]


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


def silence_unused(component):
    """Mark ``component`` so that Amaranth does not warn when it is never elaborated (it was built
    only to check its parameters, or its constructor failed)."""
    component._MustUse__silence = True
