"""Transaction-level reference model of the Fabric: what must come out where.

The model knows the Fabric's promises, not its cycles: a message to node ``d < nodes`` leaves on
output ``d`` exactly once, whole and contiguous, after every earlier message from the same input to
the same output; a message to a node that does not exist is dropped whole and counted.
"""

from collections import deque

from rtl.layouts import MessageHeader, codec

from .message import Message, MessageError

__all__ = ["FabricModel"]


class FabricModel:
    """Reference model and checker for a Fabric of ``nodes`` ports.

    Feed it what the inputs accepted (:meth:`sent`) and what the outputs delivered
    (:meth:`delivered`); it records every broken promise in :attr:`mismatches`.

    Parameters
    ----------
    nodes : int
        Number of ports.
    """

    def __init__(self, nodes):
        self.nodes = nodes
        self._expected = {}              # (input, output) -> deque of flit tuples
        self._delivered = set()          # flit tuples already delivered
        self.expected_drops = 0
        self.sent_messages = 0
        self.delivered_messages = 0
        self.mismatches = []

    def destination(self, flits):
        """Return the output a message goes to, or ``None`` if the Fabric must drop it."""
        dst = codec(MessageHeader).field(flits[0][0], "dst_node")
        return dst if dst < self.nodes else None

    def sent(self, port, flits):
        """Record that input ``port`` accepted the message ``flits`` (``(data, last)`` pairs)."""
        flits = tuple(flits)
        self.sent_messages += 1
        output = self.destination(flits)
        if output is None:
            self.expected_drops += 1
        else:
            self._expected.setdefault((port, output), deque()).append(flits)

    def delivered(self, port, flits):
        """Check the message ``flits`` that output ``port`` delivered."""
        flits = tuple(flits)
        self.delivered_messages += 1
        try:
            message = Message.from_flits(flits)
        except MessageError as error:
            self.mismatches.append(f"output {port}: malformed or interleaved message ({error})")
            return
        if message.dst_node != port:
            self.mismatches.append(f"output {port}: message for node {message.dst_node} "
                                   f"(src {message.src_node}, seq {message.seq})")
            return
        queue = self._expected.get((message.src_node, port))
        if flits in self._delivered and (not queue or flits not in queue):
            self.mismatches.append(f"output {port}: duplicate of src {message.src_node} "
                                   f"seq {message.seq}")
        elif not queue:
            self.mismatches.append(f"output {port}: unexpected message "
                                   f"src {message.src_node} seq {message.seq}")
        elif queue[0] != flits:
            self.mismatches.append(f"output {port}: src {message.src_node} seq {message.seq} "
                                   f"arrived out of order or altered")
            if flits in queue:
                queue.remove(flits)
                self._delivered.add(flits)
        else:
            self._delivered.add(queue.popleft())

    def outstanding(self):
        """Return the number of messages sent but not yet delivered."""
        return sum(len(queue) for queue in self._expected.values())

    def finish(self, dropped_count):
        """Check the end state against the Fabric's ``dropped`` counter; return the mismatches."""
        if self.outstanding():
            lost = {key: len(queue) for key, queue in self._expected.items() if queue}
            self.mismatches.append(f"{self.outstanding()} messages never delivered "
                                   f"(by (input, output): {lost})")
        if dropped_count != self.expected_drops:
            self.mismatches.append(f"dropped counter is {dropped_count}, "
                                   f"expected {self.expected_drops}")
        return self.mismatches
