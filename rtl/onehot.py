"""Encoders and selectors over bit vectors, shared by the components' table logic."""

from amaranth import *

__all__ = ["index_of", "lowest_one_hot", "lowest", "highest", "select", "set_indexed", "below"]


def index_of(m, one_hot, name):
    """Return the index of the set bit of ``one_hot`` (at most one is set; 0 if none)."""
    # At least one bit wide: a one-entry table still has an index port in its Verilog.
    index = Signal(range(max(len(one_hot), 2)), name=name)
    m.d.comb += index.eq(Cat(Cat(one_hot[bit] for bit in range(len(one_hot))
                                 if bit >> position & 1).any()
                             for position in range(len(index))))
    return index


def lowest_one_hot(m, vector, name):
    """Return ``vector`` with every set bit but the lowest cleared."""
    lowest_bit = Signal(len(vector), name=f"{name}_one_hot")
    m.d.comb += lowest_bit.eq(vector & (~vector + 1))
    return lowest_bit


def lowest(m, vector, name):
    """Return the index of the lowest set bit of ``vector``."""
    return index_of(m, lowest_one_hot(m, vector, name), name)


def highest(m, vector, name):
    """Return the index of the highest set bit of ``vector``."""
    reversed_vector = Cat(vector[bit] for bit in reversed(range(len(vector))))
    highest_bit = lowest_one_hot(m, reversed_vector, name)
    return index_of(m, Cat(highest_bit[bit] for bit in reversed(range(len(vector)))), name)


def select(m, one_hot, values, name):
    """Return the value of ``values`` whose bit of ``one_hot`` is set (at most one; 0 if none),
    as an AND-OR tree rather than a chain of multiplexers."""
    width = max(len(Value.cast(value)) for value in values)
    result = Signal(width, name=name)
    # A signal, so that the selector is computed once rather than once per bit.
    selector = Signal(len(values), name=f"{name}_select")
    m.d.comb += selector.eq(one_hot)
    m.d.comb += result.eq(Cat(*[Cat(Value.cast(value)[bit] & selector[index]
                                    for index, value in enumerate(values)
                                    if bit < len(Value.cast(value))).any()
                                for bit in range(width)]))
    return result


def get_indexed(m, values, index, shape, name):
    """Return a signal of ``shape`` holding ``values[index]`` (zero when ``index`` is out of
    range): one compare per value."""
    result = Signal(shape, name=name)
    for number, value in enumerate(values):
        with m.If(index == number):
            m.d.comb += result.eq(value)
    return result


def set_indexed(m, registers, index, value):
    """Set ``registers[index]`` to ``value`` at the clock edge: one compare per register, where
    an :class:`Array` store would give every register a case per index."""
    for number, register in enumerate(registers):
        with m.If(index == number):
            m.d.sync += register.eq(value)


def below(value, bound):
    """Return whether ``value`` (an index into a table of ``bound`` entries) names an entry: a
    compare, or a constant 1 where every value of its width does (no compare of a narrower value
    with a wider constant, which lint flags)."""
    return value < bound if bound < 1 << len(value) else C(1)
