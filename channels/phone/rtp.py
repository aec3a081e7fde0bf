"""RTP (RFC 3550) packets, RFC 4733 telephone-events (DTMF received), and the SDP offer/answer
(RFC 3264) of the early media we play to queued callers.

Sits under the phone edge's media: media_worker.py builds and reads packets with it, control.py
(through media.py) reads the caller's offer and writes our answer. Pure: bytes and values in,
bytes and values out, time passed in.

Promises:
- `Stream` numbers packets right: random SSRC and initial sequence/timestamp, sequence +1 and
  timestamp +samples per packet (mod 2^16 / 2^32), marker bit on the first packet of a talk
  spurt (the stream's first, and after `mark()`).
- `DtmfReceiver` turns telephone-event packets into digits once per event: an event is one
  RTP timestamp (its start); the digit is reported at its first end packet (E bit), repeated
  end packets and packets of an event already reported are ignored; an event whose end packets
  were all lost is reported when a packet of a later event (another timestamp) arrives.
- `offer_of(sdp)` reads the first audio m= line: address (session or media c=), port, the
  payload types offered; `choose(offer)` picks PCMU (0) before PCMA (8), and the
  telephone-event payload type when offered (8000 Hz); `answer_sdp` writes our answer.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

PCMU = 0
PCMA = 8
SAMPLE_RATE = 8000
PTIME_MS = 20
SAMPLES_PER_PACKET = SAMPLE_RATE * PTIME_MS // 1000  # 160
HEADER = struct.Struct("!BBHII")
VERSION_BITS = 0x80
EVENTS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15; 16 is flash (not a digit)


@dataclass(frozen=True, slots=True)
class Packet:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes


def build(payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes,
          marker: bool = False) -> bytes:
    return HEADER.pack(VERSION_BITS, (0x80 if marker else 0) | (payload_type & 0x7F),
                       sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF) + payload


def parse(data: bytes) -> Packet | None:
    """An RTP packet, or None for what is not one (RTCP, version != 2, truncated)."""
    if len(data) < HEADER.size:
        return None
    first, second, seq, ts, ssrc = HEADER.unpack_from(data)
    if first >> 6 != 2:
        return None
    pt = second & 0x7F
    if 72 <= pt <= 76:  # RTCP sharing the port (RFC 5761)
        return None
    offset = HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:  # padding
        if end <= offset:
            return None
        end -= data[-1]
    if end < offset:
        return None
    return Packet(pt, seq, ts, ssrc, bool(second & 0x80), bytes(data[offset:end]))


@dataclass(slots=True)
class Stream:
    """The numbering of one outgoing RTP stream (RFC 3550 §5.1: random initial values)."""

    payload_type: int
    ssrc: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))
    sequence: int = field(default_factory=lambda: int.from_bytes(os.urandom(2), "big"))
    timestamp: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))
    marker: bool = True

    def packet(self, payload: bytes) -> bytes:
        data = build(self.payload_type, self.sequence, self.timestamp, self.ssrc, payload,
                     self.marker)
        self.marker = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF
        return data

    def mark(self) -> None:
        self.marker = True


def event_payload(event: int, end: bool, volume: int = 10, duration: int = 0) -> bytes:
    """An RFC 4733 §2.3 telephone-event payload (for tests and benches that send digits)."""
    return struct.pack("!BBH", event, (0x80 if end else 0) | (volume & 0x3F), duration)


@dataclass
class DtmfReceiver:
    """Digits from the telephone-event packets of one caller (one SSRC's timestamps)."""

    payload_type: int
    _reported: list[int] = field(default_factory=list)  # timestamps of events reported
    _pending: tuple[int, int] | None = None  # (timestamp, event) seen without an end yet

    def packet(self, packet: Packet) -> str | None:
        """The digit this packet completes, or None."""
        if packet.payload_type != self.payload_type or len(packet.payload) < 4:
            return None
        event, flags = packet.payload[0], packet.payload[1]
        ts = packet.timestamp
        if ts in self._reported:
            return None
        digit = None
        pending = self._pending
        if pending is not None and pending[0] != ts:
            # a new event while the last one never ended (its end packets lost): report it
            digit = self._report(*pending)
        if event >= len(EVENTS):
            self._pending = None
            return digit
        if flags & 0x80:
            self._pending = None
            late = self._report(ts, event)
            return late if digit is None else digit + (late or "")
        self._pending = (ts, event)
        return digit

    def _report(self, ts: int, event: int) -> str:
        self._reported.append(ts)
        del self._reported[:-8]
        self._pending = None
        return EVENTS[event]


# ---------------------------------------------------------------------- SDP


@dataclass(frozen=True, slots=True)
class Offer:
    address: str
    port: int
    payload_types: tuple[int, ...]
    rtpmap: dict[int, str]  # payload type -> "encoding/rate" (lower case)
    direction: str = "sendrecv"


@dataclass(frozen=True, slots=True)
class Choice:
    payload_type: int  # 0 or 8
    event_type: int | None  # the caller's telephone-event payload type, if offered


def offer_of(sdp: str) -> Offer | None:  # noqa: C901 - one pass over the lines
    """The first audio stream of an SDP offer, or None (no audio, port 0, unreadable)."""
    session_addr = None
    media: list[str] | None = None
    media_addr = None
    rtpmap: dict[int, str] = {}
    direction = "sendrecv"
    for raw in sdp.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            if media is not None:
                break  # only the first audio stream
            parts = value.split()
            if len(parts) >= 4 and parts[0] == "audio":
                media = parts
        elif kind == "c":
            parts = value.split()
            addr = parts[2].split("/")[0] if len(parts) >= 3 else None
            if media is None:
                session_addr = addr
            else:
                media_addr = addr
        elif kind == "a" and media is not None:
            if value.startswith("rtpmap:"):
                pt, _, enc = value[7:].partition(" ")
                if pt.isdigit():
                    rtpmap[int(pt)] = enc.strip().lower()
            elif value in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = value
    if media is None:
        return None
    try:
        port = int(media[1].split("/")[0])
        types = tuple(int(p) for p in media[3:] if p.isdigit())
    except ValueError:
        return None
    address = media_addr or session_addr
    if not address or port <= 0 or port > 65535 or "RTP/AVP" not in media[2].upper():
        return None
    return Offer(address, port, types, rtpmap, direction)


def choose(offer: Offer | None) -> Choice | None:
    """PCMU before PCMA (static types, or named in an rtpmap at 8000 Hz), and the caller's
    telephone-event type; None when neither codec is offered or the stream is inactive."""
    if offer is None or offer.direction in ("inactive", "sendonly"):
        return None
    chosen = None
    for wanted, name in ((PCMU, "pcmu/8000"), (PCMA, "pcma/8000")):
        for pt in offer.payload_types:
            enc = offer.rtpmap.get(pt)
            if (pt == wanted and (enc is None or enc.startswith(name))) or \
                    (enc is not None and enc.startswith(name)):
                chosen = pt
                break
        if chosen is not None:
            break
    if chosen is None:
        return None
    event = next((pt for pt in offer.payload_types
                  if offer.rtpmap.get(pt, "").startswith("telephone-event/8000")), None)
    return Choice(chosen, event)


def codec_of(choice: Choice, offer: Offer) -> int:
    """0 (µ-law) or 8 (A-law): what the chosen payload type carries."""
    enc = offer.rtpmap.get(choice.payload_type, "")
    if enc.startswith("pcma") or (not enc and choice.payload_type == PCMA):
        return PCMA
    return PCMU


def answer_sdp(host: str, port: int, choice: Choice, offer: Offer, session_id: int) -> str:
    """Our answer: one audio stream, the chosen codec (+ telephone-event), sendrecv (we play
    and we listen for digits) unless the caller only receives."""
    types = [choice.payload_type] + ([choice.event_type] if choice.event_type is not None
                                     else [])
    name = "PCMA/8000" if codec_of(choice, offer) == PCMA else "PCMU/8000"
    ip = "IP6" if ":" in host else "IP4"
    lines = [
        "v=0",
        f"o=switchboard {session_id} {session_id} IN {ip} {host}",
        "s=switchboard queue",
        f"c=IN {ip} {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(t) for t in types)}",
        f"a=rtpmap:{choice.payload_type} {name}",
    ]
    if choice.event_type is not None:
        lines += [f"a=rtpmap:{choice.event_type} telephone-event/8000",
                  f"a=fmtp:{choice.event_type} 0-16"]
    lines += [f"a=ptime:{PTIME_MS}", "a=sendonly" if offer.direction == "recvonly"
              else "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"
