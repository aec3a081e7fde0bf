"""Wire names of the telephony integration API (CTI), version 1 (docs/cti-protocol.md, section
"Telephony integration (CTI)", shows every message with an example).

These names are API: a message type, a field, a reason, an error code or a close code changes
only with a new protocol version. Every frame is one JSON object with a `type`; a request from
the PBX may carry an `id` (string or integer), which its answer (`ok` or `error`) repeats as
`re`. `offer`, `route` and `cancel_route` are pushed by the dispatcher on its own. This module
only builds and checks dicts: no I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any

from dispatcher.service import wire
from dispatcher.service.wire import BadFrame, read_frame, string_field

PROTOCOL_VERSION = 1
SUBPROTOCOL = "switchboard.cti.v1"
# Where the PBX may put its token: `Authorization: Bearer <jwt>` (preferred), the subprotocol
# `bearer.<jwt>` next to SUBPROTOCOL, or the query parameter `access_token`.
TOKEN_SUBPROTOCOL_PREFIX = "bearer."
TOKEN_QUERY_PARAMETER = "access_token"
BEARER = "bearer "
HTTP_EVENTS_PATH = (b"cti", b"events")  # POST /cti/events: one event per request

# PBX -> dispatcher
CALL_ARRIVED = "call.arrived"
CALL_ANSWERED = "call.answered"
CALL_ENDED = "call.ended"
CALL_ABANDONED = "call.abandoned"
DEVICE_STATE = "device.state"
ROUTE_FAILED = "route.failed"  # the PBX could not connect a routed call to the extension
# callbacks (cti_callbacks.py), by task id: what came of a `callback` instruction
CALLBACK_REACHED = "callback.reached"  # the customer answered: the agent talks to them
CALLBACK_FAILED = "callback.failed"  # reason: no_answer | busy | failed | agent_no_answer
CALLBACK_ENDED = "callback.ended"  # a reached callback is over; by: customer | agent | pbx
CALLBACK_EVENTS = frozenset({CALLBACK_REACHED, CALLBACK_FAILED, CALLBACK_ENDED})
PING = "ping"
EVENT_TYPES = frozenset({CALL_ARRIVED, CALL_ANSWERED, CALL_ENDED, CALL_ABANDONED, DEVICE_STATE,
                         ROUTE_FAILED}) | CALLBACK_EVENTS
CLIENT_TYPES = EVENT_TYPES | {PING}

# dispatcher -> PBX
WELCOME = "welcome"
OFFER = "offer"  # the call is offered to an agent (ring their extension, or wait for route)
ROUTE = "route"  # the agent accepted: connect the call to their extension
CANCEL_ROUTE = "cancel_route"  # an offer or a route is over: stop ringing / take the call back
CALLBACK = "callback"  # call the agent's extension, then the customer's number (a callback)
OK = "ok"
ERROR = "error"
PONG = "pong"

# device.state states
BUSY = "busy"  # in a call outside our routing: no phone task for the agent
RINGING = "ringing"  # a call outside our routing rings it: engaged, as busy
IDLE = "idle"  # free (and reachable)
UNAVAILABLE = "unavailable"  # unplugged, logged out of the PBX: not reachable
DEVICE_STATES = (BUSY, RINGING, IDLE, UNAVAILABLE)
ENGAGED_STATES = frozenset({BUSY, RINGING})  # the agent takes no phone task meanwhile

# call.ended `by`
ENDED_BY = ("caller", "agent", "pbx")
DEFAULT_ENDED_BY = "pbx"
DEFAULT_ABANDON_REASON = "caller_hung_up"

# cancel_route reasons
EXPIRED = "expired"  # nobody accepted in time (RONA): the call is back at the head of its queue
REJECTED = "rejected"  # the agent declined: the call goes to another agent
WITHDRAWN = "withdrawn"  # taken back before an answer (caller gone, agent gone, device busy)
REQUEUED = "requeued"  # a routed call was taken back from its agent and waits again
TRANSFERRED = "transferred"  # a routed call moved to another queue or agent
CANCELLED = "cancelled"  # a supervisor cancelled the task
ROUTE_FAILED_REASON = "route_failed"  # route.failed, or no call.answered in time: requeued
DEFAULT_ROUTE_FAILURE = "no_answer"  # also the `detail` when cti_route_timeout ran out
INTEGRATION_ACTOR_PREFIX = "integration:"  # the actor of what an integration did, in the log

# error codes (the domain's codes pass through: unknown_queue, offer_not_current, invalid_value,
# illegal_transition, unknown_agent, not_eligible)
BAD_MESSAGE = wire.BAD_FRAME  # "bad_message"
UNKNOWN_TYPE = wire.UNKNOWN_TYPE  # "unknown_type"
UNKNOWN_CALL = "unknown_call"
UNKNOWN_EXTENSION = "unknown_extension"
FORBIDDEN = "forbidden"
UNAUTHORIZED = "unauthorized"  # POST /cti/events without a valid token (HTTP 401)
INTERNAL = "internal"
NOT_RUNNING = "not_running"  # POST /cti/events while the CTI is stopped (HTTP 503)

# close codes (the handshake refuses bad tokens with HTTP 401 and other roles with 403)
CLOSE_SHUTDOWN = 1001
CLOSE_TOO_SLOW = 1008

# Bounds on what a PBX may send.
MAX_CALL_ID_CHARS = 256
MAX_NUMBER_CHARS = 64
MAX_FIELD_CHARS = 200
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_KEY_CHARS = 64
MAX_ATTRIBUTE_VALUE_CHARS = 1000


class BadMessage(BadFrame):
    """A request the CTI refuses: `code` (BAD_MESSAGE, UNKNOWN_TYPE) and the request's `rid`
    when it could be read (dispatcher.service.wire.BadFrame, the console's rules too)."""


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def parse(raw: str | bytes, *, text_only: bool = True) -> dict[str, Any]:
    """A PBX request as a dict with a known `type`; BadMessage otherwise. WebSocket frames are
    text (`text_only`); a `POST /cti/events` body is UTF-8 bytes. The rules are the console's
    too (dispatcher.service.wire.read_frame): `id` a string or an integer."""
    return read_frame(raw, CLIENT_TYPES, text_only=text_only, error=BadMessage)


def text(msg: dict[str, Any], name: str, required: bool = True, limit: int = MAX_FIELD_CHARS,
         default: str | None = None) -> str | None:
    """A string field of at most `limit` characters (required: also non-empty)."""
    return string_field(msg, name, required=required, limit=limit, default=default,
                        nonempty=required, error=BadMessage)


def choice(msg: dict[str, Any], name: str, allowed: tuple[str, ...],
           default: str | None = None) -> str:
    value = msg.get(name, default)
    if value not in allowed:
        raise BadMessage(f"{msg['type']}: `{name}` is one of {', '.join(allowed)}")
    return value


def integer(msg: dict[str, Any], name: str) -> int | None:
    value = msg.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadMessage(f"{msg['type']}: `{name}` must be an integer")
    return value


def skills(msg: dict[str, Any]) -> dict[str, int]:
    """The skills the call needs on top of its queue's: {skill: level 0-10}, at most
    MAX_ATTRIBUTES of them."""
    value = msg.get("skills")
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ATTRIBUTES or not all(
            isinstance(k, str) and 0 < len(k) <= MAX_ATTRIBUTE_KEY_CHARS
            and isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10
            for k, v in value.items()):
        raise BadMessage(f"{msg['type']}: `skills` is an object of at most {MAX_ATTRIBUTES} "
                         f"skills, each a level 0-10")
    return dict(value)


def attributes(msg: dict[str, Any]) -> dict[str, Any]:
    """The call's attributes: a flat object of at most MAX_ATTRIBUTES scalars."""
    value = msg.get("attributes")
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ATTRIBUTES:
        raise BadMessage(f"{msg['type']}: `attributes` is an object of at most "
                         f"{MAX_ATTRIBUTES} entries")
    for k, v in value.items():
        if len(k) > MAX_ATTRIBUTE_KEY_CHARS or not k:
            raise BadMessage(f"{msg['type']}: attribute names have 1-{MAX_ATTRIBUTE_KEY_CHARS}"
                             " chars")
        ok = v is None or isinstance(v, (bool, int)) or (
            isinstance(v, float) and math.isfinite(v)) or (
            isinstance(v, str) and len(v) <= MAX_ATTRIBUTE_VALUE_CHARS)
        if not ok:
            raise BadMessage(f"{msg['type']}: attribute {k[:MAX_ATTRIBUTE_KEY_CHARS]!r} must be"
                             f" a number, a boolean, null or a string of at most "
                             f"{MAX_ATTRIBUTE_VALUE_CHARS} chars")
    return dict(value)


def ok(rid: Any, **data: Any) -> dict[str, Any]:
    return {"type": OK, "re": rid, **data}


def error(code: str, message: str, rid: Any = None) -> dict[str, Any]:
    return {"type": ERROR, "re": rid, "code": code, "message": message}
