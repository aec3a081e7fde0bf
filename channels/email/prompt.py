"""Writes that leave at once: `send(transport, data)` hands `data` to the socket (or pipe) in
the same call when nothing is waiting before it, instead of buffering it for the reactor's next
turn.

Why: a buffered Twisted write registers the descriptor for writing, waits a turn, writes,
then unregisters it (on the asyncio reactor: two `epoll_ctl` calls, an asyncio handle and a
dispatch through the logging context). An SMTP session is short replies, each answered before
the client sends on: that was a fifth of the reactor's time per message (bench/smtp.py, py-spy).
Here the reply costs one `send`.

Promises: bytes leave in the order they were written (a write goes out at once only when the
transport holds nothing unsent; otherwise, and for what the kernel did not take, Twisted's own
buffered write, which also sees errors and closes as before). A transport this module does not
know, or a TCP connection speaking TLS, gets Twisted's write unchanged.

Sits in the e-mail edge; used by the SMTP intake (smtp.py) and the reading workers' pipes
(reading.py)."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import abstract, process, tcp
from twisted.protocols.policies import ProtocolWrapper

# An errno that means "the kernel takes nothing now": fall back to the buffered write.
_AGAIN = (BlockingIOError, InterruptedError)


def _idle(fd: abstract.FileDescriptor) -> bool:
    """Nothing unsent on `fd`, and it is open for writing."""
    return (fd.connected and not fd.disconnecting and not fd._writeDisconnected
            and not fd._tempDataBuffer and fd.offset == len(fd.dataBuffer))


def _direct(transport: Any) -> tuple[Any, Any] | None:
    """The descriptor under `transport` and how to write to it without buffering, or None."""
    while isinstance(transport, ProtocolWrapper):  # the connection gate (dispatcher/net.py)
        transport = transport.transport
    if isinstance(transport, tcp.Connection):
        if getattr(transport, "TLS", True):  # after STARTTLS every byte goes through TLS
            return None
        return transport, transport.socket.send
    if isinstance(transport, process.Process):  # a reading worker's stdin (reading.py)
        writer = transport.pipes.get(0)
        if isinstance(writer, process.ProcessWriter):
            return writer, lambda data: os.write(writer.fd, data)
    return None


def send(transport: Any, data: bytes) -> None:
    """Write `data` to `transport`: at once when nothing is waiting, else buffered."""
    found = _direct(transport) if data else None
    if found is not None and _idle(found[0]):
        fd, write = found
        try:
            sent = write(data)
        except _AGAIN:
            sent = 0
        except OSError:  # a broken connection: the buffered write finds and reports it
            sent = 0
        if sent >= len(data):
            return
        fd.write(data[sent:])
        return
    transport.write(data)
