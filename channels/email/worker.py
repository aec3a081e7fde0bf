"""The e-mail reading worker: a child process (`python -m channels.email.worker`) that parses
and translates messages for reading.py, so that no message ever costs the reactor's time or
memory.

Speaks frames on stdin/stdout: 8 bytes of big-endian length, then a pickle. It first writes
READY (once its imports are done), then answers each request `(raw, queue, envelope_from,
recipients, kwargs, limits)` with `("ok", InboundMail)` (its `raw` left empty: the server has
the bytes, and sending them back would double a large message's trip through the pipes),
`("retry", text)` (an attachment could not be stored: a passing condition) or `("error",
text)`. Its address space is capped (`--memory-mb`): a message that would need more fails
alone, with a MemoryError, instead of starving the server. Only reading.py starts it, and only
reading.py reads what it writes; since this process reads hostile mail, reading.py unpickles its
answers allowing only the data classes of an `InboundMail` (`load_answer`)."""

from __future__ import annotations

import argparse
import pickle
import resource
import struct
import sys
from typing import BinaryIO

HEADER = struct.Struct(">Q")
READY = b"READY"


def read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: BinaryIO, body: bytes) -> None:
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="channels.email.worker")
    args.add_argument("--memory-mb", type=int, default=0)
    opts = args.parse_args(argv)
    if opts.memory_mb > 0:
        limit = opts.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from .parse import parse
    from .translate import inbound

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    write_frame(stdout, READY)
    while True:
        body = read_frame(stdin)
        if body is None:
            return 0
        try:
            raw, queue, envelope_from, recipients, kwargs, limits = pickle.loads(body)
            parsed = parse(raw, limits)
            if any("MemoryError" in d for d in parsed.defects):  # parse swallows it per part
                raise MemoryError
            message = inbound(raw, queue, envelope_from, recipients, parsed=parsed, **kwargs)
            object.__setattr__(message, "raw", b"")  # frozen, but ours alone until pickled
            answer = pickle.dumps(("ok", message), protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            parsed = message = None
            write_frame(stdout, pickle.dumps(("error", "over the worker's memory limit")))
            return 3  # a fresh worker takes the next message
        except OSError as exc:  # storing an attachment (a full disk): the sender retries
            answer = pickle.dumps(("retry", f"{type(exc).__name__}: {exc}"[:500]))
        except Exception as exc:  # noqa: BLE001 - reported to the server, which falls back
            answer = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"[:500]))
        write_frame(stdout, answer)


if __name__ == "__main__":
    sys.exit(main())
