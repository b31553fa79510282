"""Reference model of the message buffer's RX cache: which lines it holds, oldest first.

The model follows the buffer's events as a monitor reports them and says which of them break
the buffer's rules (see :class:`rtl.msgbuf.MessageBuffer`): a line announced while held stops
being held until its fill completes; a completed fill makes its line the newest; a probe hit
hands the line over; a write-back takes the oldest line. The data itself is checked against a
flat reference memory, not here.
"""

from collections import OrderedDict

__all__ = ["MessageBufferModel"]


class MessageBufferModel:
    """The RX lines of a message buffer, oldest first.

    Parameters
    ----------
    rx_lines : int
        Lines kept before the oldest is written back; a fill beyond it forces a write-back.
    """

    def __init__(self, rx_lines):
        self.rx_lines = rx_lines
        self._held = OrderedDict()      # line -> None, oldest first
        self._filling = set()

    def __contains__(self, line):
        return line in self._held

    def __len__(self):
        return len(self._held)

    @property
    def oldest(self):
        return next(iter(self._held), None)

    def announce(self, line):
        """A fill of ``line`` was announced: a held line is being rewritten, not readable."""
        self._held.pop(line, None)
        self._filling.add(line)

    def commit(self, line):
        """The fill of ``line`` completed: it is held, the newest. Return an error or None."""
        if line not in self._filling:
            return f"fill of line {line:#x} completed without an announcement"
        self._filling.discard(line)
        self._held[line] = None
        return None

    def take(self, line):
        """A probe hit handed ``line`` over to the caches. Return an error or None."""
        if self._held.pop(line, 0) is not None:
            return f"probe hit on line {line:#x}, which the buffer does not hold"
        return None

    def write_back(self, line):
        """``line`` was written back to memory. Return an error or None."""
        if line != self.oldest:
            oldest = "none" if self.oldest is None else f"{self.oldest:#x}"
            return f"write-back of line {line:#x}, the oldest held line is {oldest}"
        del self._held[line]
        return None
