"""Writes held together: a WebSocket connection's transport (websocket.py) that a writer can ask
to hold what it writes and send it as one `write` when it lets go.

Sits beside websocket.py at the top of the dispatcher (no edge, no service). Why: one decision
often gives one socket several frames at once (an offer and the agent's presence; a task closed
and the presence), and asyncio's TCP transports send each `write` at once, one `send` system
call and one segment each (TCP_NODELAY). On a busy server each call also lets the database
threads take the interpreter, and the reactor waits to get it back: measured on the push
bench, a quarter of the reactor thread's samples were inside the transport's `write`. A writer
that has several frames ready holds them (`hold`), writes them, and lets go (`release`): one
call for all.

`HeldWrites` wraps a connection's transport. It promises:
- while not held, `write` is the transport's own, at once: nothing waits for a later turn;
- while held, bytes are kept in order and leave as one write at `release`;
- `close()` and `write_eof()` send what is held first; `abort()` drops it, as asyncio's own
  abort drops its buffer;
- flow control sees held bytes (`get_write_buffer_size`); everything else is the transport's
  (`__getattr__`).
"""

from __future__ import annotations

import asyncio
from typing import Any


class HeldWrites:
    """A transport whose writes may be held and sent as one (see the module)."""

    __slots__ = ("transport", "_held", "_size", "_holding")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._held: list[bytes] = []
        self._size = 0
        self._holding = False

    def hold(self) -> None:
        """Keep what is written from now on until `release`."""
        self._holding = True

    def release(self) -> None:
        """Send what was held, as one write, and write at once again."""
        self._holding = False
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        self._held, self._size = [], 0
        if not self.transport.is_closing():
            self.transport.write(data)

    def write(self, data: bytes) -> None:
        if not self._holding:
            self.transport.write(data)
        elif data:
            self._held.append(bytes(data))
            self._size += len(data)

    def writelines(self, chunks: Any) -> None:
        for data in chunks:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self._size

    def write_eof(self) -> None:
        self.release()
        self.transport.write_eof()

    def close(self) -> None:
        self.release()
        self.transport.close()

    def abort(self) -> None:
        self._held, self._size, self._holding = [], 0, False
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
