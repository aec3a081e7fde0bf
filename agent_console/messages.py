"""Wire names of the agent console protocol, version 1 (docs/console-protocol.md shows every
message).

These names are API: a message type, a field, an error code or a close code changes only with a
new protocol version. Every frame is one JSON object with a `type`. A client request may carry
an `id`; the answer (`ok` or `error`) repeats it as `re`. Everything else the server pushes on
its own. This module only builds and checks dicts: no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from html.parser import HTMLParser
from typing import Any

from dispatcher.service import wire
from dispatcher.service.wire import BadFrame, read_frame, string_field

PROTOCOL_VERSION = 1
SUBPROTOCOL = "switchboard.v1"
# A browser cannot set headers on a WebSocket: it offers the token as a second subprotocol,
# `bearer.<jwt>`, next to SUBPROTOCOL (the server answers SUBPROTOCOL, never the token).
TOKEN_SUBPROTOCOL_PREFIX = "bearer."
TOKEN_QUERY_PARAMETER = "access_token"

# client -> server
HELLO = "hello"
PRESENCE = "presence"  # also server -> client
ACCEPT = "accept"
REJECT = "reject"
WRAP_UP = "wrap_up"
COMPLETE = "complete"
PICK = "pick"
TRANSFER = "transfer"
REPLY = "reply"
HISTORY = "history"  # also server -> client (the answer)
MERGE = "merge"  # supervisors only
PING = "ping"
# answers (docs/console-protocol.md "Answers"): the reply box (agents), the library and the review
# queue (supervisors only)
ANSWERS_SEARCH = "answers_search"
SUGGEST = "suggest"
ANSWER_LIST = "answer_list"
ANSWER_SAVE = "answer_save"
ANSWER_RETIRE = "answer_retire"
ANSWER_HISTORY = "answer_history"
REVIEW_LIST = "review_list"
REVIEW_DECIDE = "review_decide"
ANSWER_IMPORT = "answer_import"  # JSON Lines, in parts (the supervisor page's file picker)
ANSWER_EXPORT = "answer_export"

# server -> client
WELCOME = "welcome"
OFFER = "offer"
OFFER_CANCELLED = "offer_cancelled"
ASSIGNED = "assigned"
TASK_STATE = "task_state"
TASK_CLOSED = "task_closed"
QUEUES = "queues"  # supervisors and integrations
OK = "ok"
ERROR = "error"
PONG = "pong"
REVIEW_HELD = "review_held"  # supervisors: an outgoing answer waits for review
REVIEW_DECIDED = "review_decided"  # the agent whose answer it was, and supervisors

# offer_cancelled reasons
EXPIRED = "expired"
TAKEN_BACK = "taken_back"
CALLER_HUNG_UP = "caller_hung_up"

# error codes (the domain's codes pass through: offer_not_current, forbidden, not_eligible,
# task_taken, unknown_task, unknown_agent, illegal_transition, invalid_value, unknown_customer)
BAD_MESSAGE = wire.BAD_FRAME  # "bad_message"
UNKNOWN_TYPE = wire.UNKNOWN_TYPE  # "unknown_type"
HELLO_FIRST = "hello_first"
UNSUPPORTED_VERSION = "unsupported_version"
FORBIDDEN = "forbidden"
NOT_AVAILABLE = "not_available"
INTERNAL = "internal"

# close codes (4000-4999: application)
CLOSE_DISPLACED = 4001  # reason: "displaced by a newer connection"
CLOSE_UNSUPPORTED_VERSION = 4002
CLOSE_NOT_AN_AGENT = 4003
CLOSE_SHUTDOWN = 1001
DISPLACED_REASON = "displaced by a newer connection"

AGENT_TYPES = frozenset({PRESENCE, ACCEPT, REJECT, WRAP_UP, COMPLETE, PICK, TRANSFER, REPLY})
CLIENT_TYPES = AGENT_TYPES | {HELLO, HISTORY, MERGE, PING}
ANSWER_AGENT_TYPES = frozenset({SUGGEST})  # agents, on their own offer or task
ANSWER_SUPERVISOR_TYPES = frozenset({ANSWER_LIST, ANSWER_SAVE, ANSWER_RETIRE, ANSWER_HISTORY,
                                     REVIEW_LIST, REVIEW_DECIDE, ANSWER_IMPORT, ANSWER_EXPORT})
ANSWER_TYPES = ANSWER_AGENT_TYPES | ANSWER_SUPERVISOR_TYPES | {ANSWERS_SEARCH}
CLIENT_TYPES = CLIENT_TYPES | ANSWER_TYPES
# collaboration and codification (docs/console-protocol.md "Collaboration and categories"):
# notes, the notes of a task, consults, reminders, redirects, category corrections (agents
# on a task they hold; supervisors: notes and categories on any open task), spam release
# (supervisors only). `notes` is also server -> client (the answer).
NOTE = "note"
NOTES = "notes"
CONSULT = "consult"
REMIND = "remind"
REDIRECT = "redirect"
CATEGORISE = "categorise"
SPAM_RELEASE = "spam_release"
SPAM_LIST = "spam_list"  # supervisors: the mails parked as spam
COLLABORATION_AGENT_TYPES = frozenset({CONSULT, REMIND, REDIRECT})
COLLABORATION_SUPERVISOR_TYPES = frozenset({SPAM_RELEASE, SPAM_LIST})
COLLABORATION_TYPES = COLLABORATION_AGENT_TYPES | COLLABORATION_SUPERVISOR_TYPES | {
    NOTE, NOTES, CATEGORISE}
CLIENT_TYPES = CLIENT_TYPES | COLLABORATION_TYPES
# supervision (docs/console-protocol.md "Supervision"), supervisors only: `watch` subscribes to the
# live state (`live`, server -> client, at most once a second and only on change); the
# balancing actions move an agent between queues or change their skills, change an agent's
# presence, change a task's priority or queue, offer it to a named agent, take it back.
WATCH = "watch"
AGENT_UPDATE = "agent_update"
AGENT_PRESENCE = "agent_presence"
TASK_PRIORITY = "task_priority"
TASK_MOVE = "task_move"
TASK_ASSIGN = "task_assign"
TASK_TAKE_BACK = "task_take_back"
LIVE = "live"
SUPERVISION_TYPES = frozenset({WATCH, AGENT_UPDATE, AGENT_PRESENCE, TASK_PRIORITY, TASK_MOVE,
                               TASK_ASSIGN, TASK_TAKE_BACK})
CLIENT_TYPES = CLIENT_TYPES | SUPERVISION_TYPES
# the agent's desk (docs/console-protocol.md "Calls, wrap-up and dispositions", "Pull queues"):
# more time to wrap up (agents, on a task they hold); the list of a pull queue's tasks an agent may pick
# (server -> client, to agents of a pull queue only).
WRAP_UP_EXTEND = "wrap_up_extend"
PULL_LIST = "pull_list"
TASK_UPDATE = "task_update"  # server -> client: a held task's desk fields changed, not its state
DESK_TYPES = frozenset({WRAP_UP_EXTEND})
CLIENT_TYPES = CLIENT_TYPES | DESK_TYPES
# conversations (docs/console-protocol.md "Conversation"): a page of a task's thread (agents on
# a task they hold, supervisors on any); pushed: a message joined the thread of a task the agent
# holds, one of our messages changed delivery status (queued, sent, retrying, dead, bounced).
CONVERSATION = "conversation"  # also server -> client (the answer)
CONVERSATION_CHANGED = "conversation_changed"
MESSAGE_STATUS = "message_status"
CONVERSATION_TYPES = frozenset({CONVERSATION})
CLIENT_TYPES = CLIENT_TYPES | CONVERSATION_TYPES
# customers (docs/console-protocol.md "Customers"), supervisors only: find customers by name, e-mail
# or phone; correct a customer's name and identities (the card and timeline: `history`; two
# customers made one: `merge`).
CUSTOMER_SEARCH = "customer_search"
CUSTOMER_EDIT = "customer_edit"
CUSTOMER_TYPES = frozenset({CUSTOMER_SEARCH, CUSTOMER_EDIT})
CLIENT_TYPES = CLIENT_TYPES | CUSTOMER_TYPES
# An agent signed off by a supervisor: their console is closed with this code and reason.
CLOSE_SIGNED_OFF = 4004
SIGNED_OFF_REASON = "signed off by a supervisor"
# Accounts (docs/console-protocol.md "Sign-in"): the hello of a token whose account is disabled,
# or of a supervisor token without a supervisor account, is answered with an error (code
# `account_disabled` / `unknown_account`) and the socket closed with one of these.
CLOSE_ACCOUNT_DISABLED = 4005
CLOSE_NO_ACCOUNT = 4006
# POST /login and /login/refresh (login.py): the `error` codes of their JSON answers.
LOGIN_PATH = "/login"
LOGIN_REFUSED = "sign_in_refused"  # 401: wrong id or password (one code for both)
LOGIN_DISABLED = "account_disabled"  # 403
LOGIN_THROTTLED = "too_many_attempts"  # 429, with Retry-After and `retry_after`
LOGIN_BAD_REQUEST = "bad_request"  # 400 / 413 / 415
LOGIN_FORBIDDEN_ORIGIN = "origin_not_allowed"  # 403
LOGIN_TOKEN_REFUSED = "invalid_token"  # 401 on /login/refresh

# Bounds on what a client may send in a field and on the e-mail text pushed.
MAX_TEXT_CHARS = 100_000
MAX_FIELD_CHARS = 200
MAX_TEXT_PUSHED = 100_000


class BadMessage(BadFrame):
    """A request the console refuses: `code` (BAD_MESSAGE, UNKNOWN_TYPE) and the request's
    `rid` when it could be read (dispatcher.service.wire.BadFrame, the CTI's rules too)."""


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def parse(raw: str | bytes) -> dict[str, Any]:
    """A client frame as a dict with a known `type`; BadMessage otherwise. The rules are the
    CTI's too (dispatcher.service.wire.read_frame): text frames, `id` a string or an integer."""
    return read_frame(raw, CLIENT_TYPES, error=BadMessage)


def field(msg: dict[str, Any], name: str, required: bool = True, limit: int = MAX_FIELD_CHARS,
          default: str | None = None) -> str | None:
    """A string field of at most `limit` characters (may be empty)."""
    return string_field(msg, name, required=required, limit=limit, default=default,
                        error=BadMessage)


def ok(rid: Any, **data: Any) -> dict[str, Any]:
    return {"type": OK, "re": rid, **data}


def error(code: str, message: str, rid: Any = None) -> dict[str, Any]:
    return {"type": ERROR, "re": rid, "code": code, "message": message}


# --- e-mail text: what the console shows of customer content ---------------------------------


class _Text(HTMLParser):
    SKIP = frozenset({"script", "style", "head", "title"})
    BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML body: tags, scripts and styles dropped (the console renders text
    only, so no markup from a customer ever reaches the page)."""
    p = _Text()
    p.feed(html)
    p.close()
    lines = [" ".join(line.split()) for line in "".join(p.parts).splitlines()]
    out, blank = [], False
    for line in lines:
        if not line:
            if not blank and out:
                out.append("")
            blank = True
        else:
            out.append(line)
            blank = False
    return "\n".join(out).strip()


def task_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """A task's attributes as pushed to the console: HTML replaced by its text, text bounded."""
    out = {k: v for k, v in attributes.items() if k not in ("html", "body_html")}
    html = attributes.get("html", attributes.get("body_html"))
    if not isinstance(out.get("text"), str) and isinstance(html, str):
        out["text"] = html_to_text(html)
    if isinstance(out.get("text"), str) and len(out["text"]) > MAX_TEXT_PUSHED:
        out["text"] = out["text"][:MAX_TEXT_PUSHED] + "\n[…]"
    return out
