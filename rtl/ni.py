"""The network interface of one node, and the system of n nodes.

This docstring is the NI's contract: the RTL (:class:`NetworkInterface`, with
:class:`rtl.txengine.TxEngine` and :class:`rtl.rxengine.RxEngine`), the transaction-level
reference NI (:mod:`behavioral.refni`) and the system testbench all follow it.

User-level MMIO (the ``cpu`` port)
    Endpoint ``e`` has the 4 KiB user page at MMIO address ``e << 12``; the registers are the
    :class:`rtl.layouts.UserReg` offsets, every access a 64-bit word. An access is checked
    against the endpoint table: a disabled endpoint, one the NI does not have, or an offset with
    no register answers BAD_ADDRESS; an ASID other than the endpoint's answers FOREIGN_ASID and
    reports a FOREIGN_ASID fault to the OS; neither changes anything. A read of a write-only
    register (DESCRIPTOR, PAYLOAD, ARM_*) answers BAD_ADDRESS. A write into the TX slot
    (DESCRIPTOR, PAYLOAD) or to DOORBELL while the endpoint's send is busy answers SLOT_BUSY and
    changes nothing. One access is taken per cycle; its answer follows in order.

Sending
    User code writes the :data:`rtl.layouts.SendDescriptor` into DESCRIPTOR and, for PIO, the
    payload into PAYLOAD (word ``i`` of the payload at ``PAYLOAD + 8 i``), then writes DOORBELL.
    The doorbell sets STATUS.busy. The TX engine takes doorbelled endpoints in round-robin order
    and checks the descriptor: a length that is not a multiple of 8 or is above
    MAX_PAYLOAD_BYTES (BAD_LENGTH), a destination node not in the system (BAD_NODE) or a flag
    bit other than DMA and NOTIFY (BAD_FLAGS) refuses the send: STATUS shows busy low and the
    error, nothing is sent, and the slot may be written again at once. (Checked in that order.)
    A DMA send first translates every page of ``local_va .. local_va + length - 1`` (at most two)
    with the TX port of the NI TLB, in the doorbell's ASID, asking for local read: a permission
    fault refuses the send (DMA_FAULT, and a TX_PERMISSION fault to the OS); a miss reports a
    TX_MISS fault and waits for the OS's MISS_ANSWER for TX: retry (after a fill) looks up again,
    reject refuses the send (DMA_REJECTED). No flit leaves before every page is translated. The
    payload is then read a line at a time, at most ``send_buffering`` lines ahead of the wire:
    each line is probed in the MessageBuffer (``ni_read``; a buffered line is the newest copy)
    and, on a miss, read from the node's memory (``dma_read`` / ``dma_data``).
    The message is the header (``src_node`` the NI's node, ``src_endpoint`` the sending endpoint,
    ``seq`` a counter per destination node starting at 0, ``notify`` the NOTIFY flag, the rest
    from the descriptor), the payload and the CRC-32 trailer (:class:`rtl.framing.MessageFramer`).
    When the trailer has left, STATUS shows busy low, error NONE, and ``sent`` one more.

Receiving
    The RX engine takes one message at a time from ``link_rx`` into a staging RAM of
    MAX_PAYLOAD_BYTES, computing the CRC as it goes, and drains every message up to its ``last``
    flit, whatever is wrong with it. It discards, counts and reports (one fault each, no memory
    written, no completion): a CRC mismatch (BAD_CRC); ``last`` before the length in the header
    says, or no ``last`` where it should be (TRUNCATED: the engine drops flits until ``last``);
    a header not for this node, not a PUT or with a bad length (BAD_HEADER); an endpoint the NI
    does not have or that is disabled (BAD_ENDPOINT). The checks come in that order, so a message
    whose CRC is wrong is BAD_CRC whatever its header says.
    A good message's pages (``remote_va .. remote_va + length - 1``, at most two; none for a
    message with no payload) are translated with the RX port of the NI TLB in the endpoint's ASID
    with the message's key, asking for remote write: a permission fault (RX_PERMISSION) or key
    fault (RX_KEY) discards the message, counted and reported, no memory written, no completion.
    A miss reports RX_MISS and waits for the OS's MISS_ANSWER for RX: retry looks up again;
    reject writes a completion entry with status REJECTED (landing_va the remote VA) and no
    payload, and reports RX_REJECTED.
    Before anything is written the engine waits while the endpoint's ring is full (tail - head
    equals the ring's size, counted mod 2**16), holding the message and the link behind it.
    Then it writes the payload a line at a time through the MessageBuffer (``rx_line`` /
    ``rx_data``: each line announced with the words the message covers), then the completion
    entry (:data:`rtl.layouts.CompletionEntry`) at ``ring_pa + COMPLETION_BYTES * (tail mod
    size)``, and advances the tail. If the header's ``notify`` is set, the Notifier then gets a
    :data:`rtl.layouts.Completion` naming the endpoint and the entry's VA (``ring_va`` + the same
    offset), and applies the endpoint's armed mode.

Notification arming
    ARM_LOCK, ARM_HANDLER and ARM_STACK hold the values a mode needs; writing ARM_MODE writes the
    Notifier's endpoint entry: that mode, those values, and the endpoint table's ASID and thread.

Privileged interface (the ``os`` port, :func:`rtl.layouts.ni_os_command_layout`)
    WRITE_ENDPOINT writes an endpoint table entry (:data:`rtl.layouts.EndpointEntry`); its ring
    restarts empty (head and tail 0) and the Notifier's entry goes back to NONE. TLB passes a
    command to the NI TLB. WRITE_CONTEXT writes a context into the Notifier's context table and
    the lock table's residency. MISS_ANSWER answers the oldest miss of the TX or RX engine.
    Faults come out of the ``fault`` port (:data:`rtl.layouts.NiFault`), events for the OS from
    the lock table (``lock_os``) and the Notifier (``notify_os``).
"""
