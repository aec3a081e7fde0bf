"""What queued callers hear, on the routing side: `MediaLink` runs the media worker process
(media_worker.py) and talks to it over a pipe; `Hold` plays each queued call's programme —
the comfort announcement on entry, then music on hold, every `announce_interval` the position
and expected wait (dispatcher.service.queue_wait), the callback offer when `callback_digit` is
set — and hands the caller's digits to call control.

Sits in the phone edge, owned by plugin.py (started and stopped with the SIP server) and used by
control.py through four calls: `begin` (after `calls.arrived` committed: our SDP answer for the
183, or None when the offer has no PCMU/PCMA), `confirm` (the callback confirmation, fires when
played), `end` (answer, CANCEL, abandon, timeout, BYE, shutdown), and the `digits` callback.

Promises: nothing here blocks the reactor (the worker does the clock and the sockets); a worker
that dies is logged once and restarted, and the streams of the calls still held are started
again on their same local ports (what our 183 told the callers); silence meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, protocol

from . import prompts, rtp
from .config import PhoneSettings, media_languages

log = logging.getLogger(__name__)

START_TIMEOUT = 2.0  # seconds for the worker to open a stream; then the call gets 182 instead
RESTART_DELAY = 0.5  # doubled (up to MAX_RESTART_DELAY) while the worker dies young
MAX_RESTART_DELAY = 30.0
YOUNG = 5.0  # seconds: a worker that dies younger than this is in a crash loop
CONFIRM_TIMEOUT = 15.0  # the confirmation's "played" never came (worker died): go on anyway


@dataclass(eq=False)
class Stream:
    """One call's stream in the worker."""

    key: str
    start: dict[str, Any]  # the start command (sent again after a restart, with its port)
    port: int | None = None
    opened: defer.Deferred | None = None
    played: defer.Deferred | None = None


class _Pipe(protocol.ProcessProtocol):
    def __init__(self, link: MediaLink) -> None:
        self.link = link
        self.buf = b""

    def outReceived(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            try:
                self.link.received(json.loads(line))
            except ValueError:
                log.warning("media worker: unreadable line %r", line[:200])

    def errReceived(self, data: bytes) -> None:
        for line in data.decode(errors="replace").splitlines():
            log.warning("media worker: %s", line)

    def processEnded(self, reason: Any) -> None:
        self.link.ended(self, reason)


class MediaLink:
    """The media worker process and the streams it carries."""

    def __init__(self, reactor: Any, settings: PhoneSettings) -> None:
        self.reactor = reactor
        self.settings = settings
        self.streams: dict[str, Stream] = {}
        self.pipe: _Pipe | None = None
        self.transport: Any = None
        self.running = False
        self.restarts = 0
        self.delay = RESTART_DELAY
        self.spawned_at = 0.0
        self.stats: dict[str, Any] = {}
        self.on_digit: Callable[[str, str], None] = lambda key, digit: None
        self._stopped: defer.Deferred | None = None

    @property
    def host(self) -> str:
        return self.settings.media_host or self.settings.host

    @property
    def pid(self) -> int | None:
        return getattr(self.transport, "pid", None)

    def start(self) -> None:
        self.running = True
        self._spawn()

    def _spawn(self) -> None:
        s = self.settings
        args = [sys.executable, "-m", "channels.phone.media_worker", "--host", self.host]
        if s.media_ports:
            args += ["--ports", s.media_ports]
        if s.prompts_dir:
            args += ["--prompts", s.prompts_dir]
        if s.music_file:
            args += ["--music", s.music_file]
        if s.media_nice:
            args += ["--nice", str(s.media_nice)]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG")}
        self.pipe = _Pipe(self)
        self.spawned_at = self.reactor.seconds()
        self.transport = self.reactor.spawnProcess(self.pipe, sys.executable, args, env=env,
                                                   path=os.getcwd())
        for stream in self.streams.values():  # after a restart: the same ports again
            self._send(stream.start if stream.port is None
                       else {**stream.start, "local_port": stream.port})

    def ended(self, pipe: _Pipe, reason: Any) -> None:
        if pipe is not self.pipe:
            return
        self.pipe = self.transport = None
        if not self.running:
            if self._stopped is not None:
                self._stopped.callback(None)
            return
        self.restarts += 1
        young = self.reactor.seconds() - self.spawned_at < YOUNG
        self.delay = min(MAX_RESTART_DELAY, self.delay * 2) if young else RESTART_DELAY
        log.error("media worker ended (%s): restarting it in %gs; %d call(s) hear silence "
                  "meanwhile", reason.getErrorMessage(), self.delay, len(self.streams))
        self.reactor.callLater(self.delay, self._respawn)

    def _respawn(self) -> None:
        if self.running and self.pipe is None:
            self._spawn()

    def stop(self) -> defer.Deferred:
        self.running = False
        for stream in list(self.streams.values()):
            self._settle(stream)
        self.streams.clear()
        if self.transport is None:
            return defer.succeed(None)
        self._stopped = defer.Deferred()
        self.transport.closeStdin()  # the worker exits when its stdin closes
        self.reactor.callLater(3.0, self._kill)
        return self._stopped

    def _kill(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):  # already gone
                self.transport.signalProcess("KILL")

    def _send(self, message: dict) -> None:
        if self.transport is not None:
            self.transport.write((json.dumps(message, separators=(",", ":")) + "\n").encode())

    # -------------------------------------------------------------- streams

    def open(self, key: str, host: str, port: int, payload_type: int, codec: int,
             event_type: int | None, play: list[str]) -> defer.Deferred:
        """Start streaming to host:port; fires with our local port (or None: not started)."""
        self.close(key)
        start = {"op": "start", "key": key, "host": host, "port": port, "pt": payload_type,
                 "codec": "alaw" if codec == rtp.PCMA else "ulaw", "event": event_type,
                 "play": play}
        stream = Stream(key, start, opened=defer.Deferred())
        self.streams[key] = stream
        d = stream.opened
        self.reactor.callLater(START_TIMEOUT, self._open_timeout, stream)
        self._send(start)
        return d

    def _open_timeout(self, stream: Stream) -> None:
        if stream.opened is not None:
            d, stream.opened = stream.opened, None
            log.warning("media worker: no stream for %s within %gs", stream.key, START_TIMEOUT)
            if self.streams.get(stream.key) is stream:
                self.close(stream.key)
            d.callback(None)

    def play(self, key: str, names: list[str], replace: bool = False) -> defer.Deferred:
        """Prompts, then music again; fires when they are played (None if the call ends)."""
        stream = self.streams.get(key)
        if stream is None:
            return defer.succeed(None)
        if stream.played is not None:
            previous, stream.played = stream.played, None
            previous.callback(None)
        stream.played = defer.Deferred()
        self._send({"op": "play", "key": key, "play": names, "replace": replace})
        return stream.played

    def close(self, key: str) -> None:
        stream = self.streams.pop(key, None)
        if stream is not None:
            self._send({"op": "stop", "key": key})
            self._settle(stream)

    @staticmethod
    def _settle(stream: Stream) -> None:
        for name in ("opened", "played"):
            d = getattr(stream, name)
            if d is not None:
                setattr(stream, name, None)
                d.callback(None)

    def received(self, msg: dict) -> None:
        op = msg.get("op")
        stream = self.streams.get(str(msg.get("key")))
        if op == "started" and stream is not None:
            stream.port = int(msg["port"])
            if stream.opened is not None:
                d, stream.opened = stream.opened, None
                d.callback(stream.port)
        elif op == "failed" and stream is not None:
            log.warning("media worker: stream for %s not opened: %s", stream.key,
                        msg.get("error"))
            self.close(stream.key)
        elif op == "played" and stream is not None and stream.played is not None:
            d, stream.played = stream.played, None
            d.callback(True)
        elif op == "digit" and stream is not None:
            self.on_digit(stream.key, str(msg.get("digit")))
        elif op == "stats":
            self.stats = msg
            log.debug("media worker: %s", msg)


# ---------------------------------------------------------------------- what each call hears


@dataclass(eq=False)
class Programme:
    call_id: str
    task_id: str
    language: str
    timer: Any = None
    answer: str | None = None  # our SDP answer (the same in every 183)
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Hold:
    """The programme of every queued call that hears media."""

    def __init__(self, reactor: Any, link: MediaLink, waits: Any, settings: PhoneSettings,
                 on_digit: Callable[[str, str], None]) -> None:
        self.reactor = reactor
        self.link = link
        self.waits = waits  # dispatcher.service.queue_wait.QueueWaits (or None)
        self.settings = settings
        self.languages = media_languages(settings)
        self.calls: dict[str, Programme] = {}
        self.on_digit = on_digit
        self._session = int.from_bytes(os.urandom(3), "big")
        link.on_digit = self._digit

    def language(self, queue: str, task: Any = None) -> str:
        attrs = getattr(task, "attributes", None) or {}
        wanted = str(attrs.get("language") or "").lower()[:2]
        if wanted in prompts.LANGUAGES:
            return wanted
        return self.languages.get(queue, self.settings.media_language)

    def begin(self, call_id: str, task: Any, queue: str, sdp: str) -> defer.Deferred:
        """Start the call's stream; fires with our SDP answer, or None (no usable offer, the
        worker did not open a stream): the call then gets 182 Queued as before."""
        offer = rtp.offer_of(sdp) if sdp else None
        choice = rtp.choose(offer)
        if choice is None or not self.settings.media_enabled:
            return defer.succeed(None)
        lang = self.language(queue, task)
        prog = Programme(call_id, task.id, lang)
        self.calls[call_id] = prog
        d = self.link.open(call_id, offer.address, offer.port, choice.payload_type,
                           rtp.codec_of(choice, offer), choice.event_type, [f"{lang}/welcome"])

        def opened(port: int | None) -> str | None:
            if port is None or prog.done:
                if self.calls.get(call_id) is prog:
                    del self.calls[call_id]
                return None
            self._session += 1
            prog.answer = rtp.answer_sdp(self.link.host, port, choice, offer, self._session)
            prog.timer = self.reactor.callLater(self.settings.announce_interval,
                                                self._announce, prog)
            return prog.answer

        return d.addCallback(opened)

    def announcement(self, prog: Programme) -> list[str]:
        standing = None
        if self.waits is not None:
            standing = self.waits.position(prog.task_id, self.reactor.seconds())
        return prompts.announcement(
            prog.language, standing.position if standing else None,
            standing.expected_wait if standing else None, self.settings.callback_digit)

    def _announce(self, prog: Programme) -> None:
        prog.timer = None
        if prog.done:
            return
        names = self.announcement(prog)
        if names:
            self.link.play(prog.call_id, names)
        prog.timer = self.reactor.callLater(self.settings.announce_interval,
                                            self._announce, prog)

    def confirm(self, call_id: str) -> defer.Deferred:
        """The callback confirmation, instead of anything else; fires once played (or at
        CONFIRM_TIMEOUT, or at once when the call has no stream)."""
        prog = self.calls.get(call_id)
        if prog is None:
            return defer.succeed(None)
        self._stop_timer(prog)
        out: defer.Deferred = defer.Deferred()

        def fire(result: Any) -> None:
            if not out.called:
                out.callback(result)
            if timeout.active():
                timeout.cancel()

        timeout = self.reactor.callLater(CONFIRM_TIMEOUT, fire, None)
        self.link.play(call_id, [f"{prog.language}/callback_confirm"], replace=True) \
            .addBoth(fire)
        return out

    def end(self, call_id: str) -> None:
        prog = self.calls.pop(call_id, None)
        if prog is None:
            return
        prog.done = True
        self._stop_timer(prog)
        self.link.close(call_id)

    def answer_of(self, call_id: str) -> str | None:
        prog = self.calls.get(call_id)
        return prog.answer if prog is not None else None

    def _digit(self, call_id: str, digit: str) -> None:
        if call_id in self.calls:
            log.info("call %s: digit %s", call_id, digit)
            self.on_digit(call_id, digit)

    @staticmethod
    def _stop_timer(prog: Programme) -> None:
        if prog.timer is not None and prog.timer.active():
            prog.timer.cancel()
        prog.timer = None

    def stop(self) -> None:
        for call_id in list(self.calls):
            self.end(call_id)
