"""What the behavioural models share to check their inputs and to shape their outputs."""

__all__ = ["is_int", "check_range", "payload"]


def is_int(value):
    """Return whether ``value`` is an integer (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_range(name, value, low, high=None):
    """Raise ValueError unless ``value`` is an integer with ``low <= value <= high`` (``high``
    None: no upper bound); the message names the value and the range."""
    if not (is_int(value) and value >= low and (high is None or value <= high)):
        bound = f"{low} .. {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} {value!r} must be an integer {bound}")


def payload(codec, **fields):
    """Return ``fields`` as the hardware's payload unpacks through ``codec`` (a
    :class:`rtl.layouts.Codec`): every field, enum fields as members; a value that does not fit
    its field raises ValueError."""
    return codec.unpack(codec.pack(**fields))
