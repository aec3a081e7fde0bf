"""The phone edge as the runtime loads it: `EDGE` (entry point `switchboard.edges: phone`).

`build(context, settings)` needs `context.calls` (dispatcher.service.calls.Calls). The edge is the
SIP server: transport and transactions (sip.py) on UDP and TCP, the registrar of agents' phones
(registrar.py) and call control (control.py), which listens to the router's outcomes for offers
of the calls it holds. On start, with `require_devices` (the default), it tells the core that from
now on an agent takes phone tasks only with a reachable phone. With `media_enabled` (the
default) it runs the media worker (media.py) for what queued callers hear, started before the
SIP server and stopped after it.

With `cti_enabled` it also runs the telephony integration API (cti.py: its `cti_*` settings)
next to the SIP server, started after it and stopped before it; with `sip_enabled = false` it
runs the CTI alone (no SIP port opened); `parts` lists what runs. On a node that does not
route, `build_standby` passes the PBX's CTI socket on to the router's node and answers SIP
with redirects to it (redirect.py).
"""

from __future__ import annotations

import dataclasses
import logging

from twisted.internet import defer

from dispatcher.domain.errors import InvalidValue
from dispatcher.service.assignment import Assignment
from dispatcher.service.calls import Calls
from dispatcher.service.edges import EdgeContext, EdgeSpec, StandbyContext
from dispatcher.service.nodes import CTI, SIP, SIP_TCP
from dispatcher.service.ports import EdgeReactor
from dispatcher.service.queries import Queries
from dispatcher.service.queue_wait import QueueWaits
from dispatcher.tunnel import Tunnel

from . import music
from .config import PhoneSettings, check
from .control import CallControl
from .cti import Cti, CtiSettings
from .dialer import Dialer
from .media import Hold, MediaLink
from .presence import PhonePresence
from .redirect import Redirect
from .registrar import Registrar
from .sip import Endpoint

log = logging.getLogger(__name__)


class PhoneEdge:
    def __init__(self, settings: PhoneSettings, *, reactor: EdgeReactor, calls: Calls,
                 assignment: Assignment, queries: Queries, cti: Cti | None = None) -> None:
        self.reactor = reactor
        self.calls = calls
        self.assignment = assignment
        self.settings = settings
        self.parts: list[str] = []
        self.control: CallControl | None = None
        self.endpoint: Endpoint | None = None
        if settings.sip_enabled:
            registrar = Registrar(reactor, calls, settings)
            # presence from the phone (presence.py): SUBSCRIBE/NOTIFY, 486 busy
            presence = PhonePresence(calls, settings, registrar)
            self.control = CallControl(reactor, calls, queries, settings, registrar, presence)
            tcp = None if settings.tcp_port < 0 else settings.tcp_port
            self.endpoint = Endpoint(reactor, self.control, settings.host, settings.udp_port, tcp)
            self.control.attach(self.endpoint)
            self.parts.append("sip")
        # Callbacks to SIP agents (dialer.py): the agent's phone, then the customer.
        self.dialer: Dialer | None = None
        calls.callbacks.configure(attempts=settings.callback_attempts,
                                  retry_delay=settings.callback_retry_delay)
        if self.control is not None and self.endpoint is not None and settings.callback_uri:
            self.dialer = Dialer(reactor, calls.callbacks, calls, settings, self.endpoint)
            self.control.dialer = self.dialer
            self.parts.append("callbacks")
        # What queued callers hear (media.py): the media worker, started and stopped with SIP.
        self.media: MediaLink | None = None
        self.waits: QueueWaits | None = None
        if self.control is not None and settings.media_enabled:
            self.media = MediaLink(reactor, settings)
            router = getattr(queries, "router", None)
            self.waits = QueueWaits(router) if router is not None else None
            self.control.hold = Hold(reactor, self.media, self.waits, settings,
                                     self.control.digit)
            self.parts.append("media")
        # The CTI API (cti.py), when `cti_enabled`: started after SIP, stopped before it.
        self.cti = cti
        if cti is not None:
            self.parts.append("cti")

    def start(self) -> defer.Deferred:
        return defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        s = self.settings
        if s.require_devices:
            await self.calls.require_devices()
        if self.control is not None and self.endpoint is not None:
            self.assignment.listen(self.control.heard)
            if self.dialer is not None:
                self.assignment.listen(self.dialer.heard)
            if self.media is not None:
                if self.waits is not None:
                    self.assignment.listen(self.waits.heard)
                self.media.start()
            self.endpoint.start()
            log.info("phone: SIP on %s udp %d, tcp %s", s.host, self.endpoint.udp_port,
                     self.endpoint.tcp_port if self.endpoint.tcp_port is not None else "off")
        if self.cti is not None:
            await self.cti.start()

    def stop(self) -> defer.Deferred:
        return defer.ensureDeferred(self._stop())

    def endpoints(self) -> dict[str, int]:
        """The CTI's WebSocket port and the SIP ports, published for the other nodes (their
        CTI tunnels, their SIP redirects)."""
        found: dict[str, int] = {}
        cti_port = getattr(self.cti, "port", None)  # set once the CTI listens
        if cti_port:
            found[CTI] = cti_port
        if self.endpoint is not None:
            found[SIP] = self.endpoint.udp_port
            if self.endpoint.tcp_port is not None:
                found[SIP_TCP] = self.endpoint.tcp_port
        return found

    async def _stop(self) -> None:
        if self.cti is not None:
            await self.cti.stop()
        if self.dialer is not None:
            self.dialer.stop()
        if self.control is not None and self.endpoint is not None:
            await self.control.stop()
            await self.endpoint.stop()
        if self.media is not None:
            await self.media.stop()


def build(context: EdgeContext, settings: PhoneSettings) -> PhoneEdge:
    calls = context.calls
    if calls is None:
        raise RuntimeError("the phone edge needs EdgeContext.calls (dispatcher.service.calls)")
    check(settings)
    if settings.sip_enabled and settings.media_enabled and settings.music_file:
        try:
            music.load(settings.music_file)  # refused at start, not in the worker's loop
        except (OSError, ValueError) as e:
            raise InvalidValue(f"phone.music_file: {e}") from None
    cti = None
    if settings.cti_enabled:  # its `cti_*` settings; devices are required here, not by it
        cti = Cti(dataclasses.replace(CtiSettings.from_phone(settings), require_devices=False),
                  reactor=context.reactor, calls=calls, queries=context.queries,
                  sessions=context.sessions, assignment=context.assignment,
                  site_root=context.site_root, token_secret=context.token_secret)
    return PhoneEdge(settings, reactor=context.reactor, calls=calls,
                     assignment=context.assignment, queries=context.queries, cti=cti)


class PhoneStandby:
    """The phone edge on a node that does not route: SIP answers with redirects to the
    leader (redirect.py: a call's dialog lives in the router's process), and the CTI's
    WebSocket port passes the PBX's socket on to the leader, which judges its handshake
    (dispatcher/tunnel.py)."""

    def __init__(self, settings: PhoneSettings, context: StandbyContext) -> None:
        nodes = context.nodes
        self.parts: list[str] = []
        self.endpoint: Endpoint | None = None
        self.tunnel: Tunnel | None = None
        if settings.sip_enabled:
            redirect = Redirect(nodes.leader)
            tcp = None if settings.tcp_port < 0 else settings.tcp_port
            self.endpoint = Endpoint(context.reactor, redirect, settings.host,
                                     settings.udp_port, tcp)
            self.parts.append("sip redirect")
        if settings.cti_enabled:
            cti = CtiSettings.from_phone(settings)
            self.tunnel = Tunnel(name="cti", host=cti.host, port=cti.port,
                                 max_frame_bytes=cti.max_frame_bytes,
                                 leader=lambda: nodes.leader(CTI),
                                 forget=nodes.forget)
            self.parts.append("cti tunnel")

    def start(self) -> defer.Deferred:
        return defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        if self.endpoint is not None:
            self.endpoint.start()
            log.info("phone: SIP redirects to the router's node on udp %d, tcp %s",
                     self.endpoint.udp_port, self.endpoint.tcp_port or "off")
        if self.tunnel is not None:
            await self.tunnel.start()

    def stop(self) -> defer.Deferred:
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self.tunnel is not None:
            await self.tunnel.stop()
        if self.endpoint is not None:
            await self.endpoint.stop()


def build_standby(context: StandbyContext, settings: PhoneSettings) -> PhoneStandby | None:
    """What the phone edge runs on a node that does not route (PhoneStandby); None when
    neither SIP nor the CTI is enabled."""
    check(settings)
    standby = PhoneStandby(settings, context)
    return standby if standby.parts else None


EDGE = EdgeSpec(name="phone", settings=PhoneSettings, build=build, standby=build_standby)


