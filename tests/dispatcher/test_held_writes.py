"""dispatcher/held_writes.py: a transport that holds a writer's frames and sends them as one
write, against a recording transport (the server's own use: tests/agent_console/test_server.py,
`test_the_frames_of_one_decision_leave_in_one_write`)."""

from __future__ import annotations

from typing import Any

from dispatcher.held_writes import HeldWrites


class Recording:
    """What a transport was asked to do, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False
        self.buffered = 7

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 9) if name == "peername" else None


def test_unheld_writes_leave_at_once() -> None:
    t = Recording()
    w = HeldWrites(t)  # type: ignore[arg-type]
    w.write(b"a")
    w.write(b"b")
    assert t.calls == [("write", b"a"), ("write", b"b")]


def test_held_writes_leave_in_order_as_one_write_at_release() -> None:
    t = Recording()
    w = HeldWrites(t)  # type: ignore[arg-type]
    w.hold()
    w.write(b"one")
    w.writelines([b"two", bytearray(b"three")])
    w.write(b"")
    assert t.calls == [] and w.get_write_buffer_size() == 7 + 11
    w.release()
    assert t.calls == [("write", b"onetwothree")] and w.get_write_buffer_size() == 7
    w.release()  # nothing held: nothing written
    w.write(b"x")  # released: at once again
    assert t.calls == [("write", b"onetwothree"), ("write", b"x")]


def test_a_held_bytearray_is_copied_when_written() -> None:
    t = Recording()
    w = HeldWrites(t)  # type: ignore[arg-type]
    buf = bytearray(b"abc")
    w.hold()
    w.write(buf)
    buf[:] = b"zzz"  # the writer reuses its buffer
    w.release()
    assert t.calls == [("write", b"abc")]


def test_close_and_eof_send_what_is_held_first_abort_drops_it() -> None:
    t = Recording()
    w = HeldWrites(t)  # type: ignore[arg-type]
    w.hold()
    w.write(b"bye")
    w.write_eof()
    assert t.calls == [("write", b"bye"), ("write_eof", None)]
    w.hold()
    w.write(b"close frame")
    w.close()
    assert t.calls[2:] == [("write", b"close frame"), ("close", None)]
    t2 = Recording()
    w2 = HeldWrites(t2)  # type: ignore[arg-type]
    w2.hold()
    w2.write(b"lost")
    w2.abort()
    w2.release()
    assert t2.calls == [("abort", None)] and w2.get_write_buffer_size() == 7


def test_what_is_held_for_a_closing_transport_is_dropped() -> None:
    t = Recording()
    w = HeldWrites(t)  # type: ignore[arg-type]
    w.hold()
    w.write(b"late")
    t.closing = True
    w.release()
    assert t.calls == []


def test_everything_else_is_the_transports_own() -> None:
    t = Recording()
    w = HeldWrites(t)  # type: ignore[arg-type]
    assert w.get_extra_info("peername") == ("127.0.0.1", 9)
    assert w.is_closing() is False and w.transport is t
