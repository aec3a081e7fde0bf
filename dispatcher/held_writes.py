"""Writes held together: a WebSocket connection's transport (websocket.py) that a writer can ask
to hold what it writes and send it as one `write` when it lets go.

Sits beside websocket.py at the top of the dispatcher (no edge, no service). Why: one decision
often gives one socket several frames at once (an offer and the agent's presence; a task closed,
the presence and the command's `ok`), and asyncio's TCP transports send each `write` at once,
one `send` system call and one segment each (TCP_NODELAY): on the push bench, 6.7 a task, where
3 carry the same frames, and the client side reads each one. A writer that has several frames
ready holds them (`hold`), writes them, and lets go (`release`): one call for all.

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

    __slots__ = ("transport", "_held", "_holding")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._held: list[bytes] = []
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
        self._held = []
        if not self.transport.is_closing():
            self.transport.write(data)

    def write(self, data: bytes) -> None:
        if not self._holding:
            self.transport.write(data)
        elif data:
            self._held.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for data in chunks:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + sum(map(len, self._held))

    def write_eof(self) -> None:
        self.release()
        self.transport.write_eof()

    def close(self) -> None:
        self.release()
        self.transport.close()

    def abort(self) -> None:
        self._held, self._holding = [], False
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
