"""Mail: the e-mail use cases. The edge (channels/email) translates SMTP and IMAP into an
`InboundMail`; this module decides what it means.

- `receive`: a message opens a new task, joins the conversation of an existing one, reopens a
  recently completed one, or opens a new task linked to an old one. It joins (or reopens) only
  when the sender is one of the thread's customer identities *and* the message is vouched for:
  authenticated by the edge (DKIM/SPF/DMARC aligned with its From domain), or naming in
  In-Reply-To/References a Message-ID we sent on that thread (128 random bits). Otherwise it
  opens a new task linked to the thread ("sender not authenticated"); a robot's mail that is
  not vouched for is not kept on the thread. Threading: the request number in the subject
  (`[#SB-000123]`) first, then In-Reply-To/References, looked up in the store, whose state
  of the thread decides (open: join), never in this process's router. A web form submission
  never names a thread (always a new task, whatever its subject says). The task, its request
  number, the message, its events, the acknowledgement (if one is due) and its routing (the
  offer to an agent, or its place in the queue) are committed in one transaction; the store
  gives the number in it (so processes sharing a database never give one twice) and the rows
  naming it are made there; whether the sender was acknowledged within the period is read
  there too, when this process does not know (its own acknowledgements it remembers for the
  period); the Deferred fires after that commit, so the edge may answer 250.
  A task that Review's automatic mode may take (its rule is automatic) is routed after its
  commit instead, unless that mode took it.
- `reply`: an agent's answer goes into the outbox with the threading headers and the request
  number in the subject, in the same transaction as its event.
- `due` / `sent` / `failed`: the outbound relay (channels/email/outbound.py) takes due messages
  and reports each attempt; 4xx and network errors are retried with exponential backoff, 5xx
  (or too many attempts) dead-letters the message with its error visible in the task's trail.

Wiring: every new task goes through `Intake` (draft, then routed and committed: one path for
every channel);
Mail adds what e-mail needs in the same transaction (request number, message, acknowledgement).
What Mail calls out to is typed here, as Protocols, and registered once by the composition root
(dispatcher/runtime/app.py) after construction: `codify_with(Codifier)` (Codification, before
the commit), `intercept_with(Interceptor)` (Collaboration, before threading) and
`answer_with(AutoAnswer)` (Review's automatic mode: before the commit, whether it may take
the task; after it, whether it did). Collaboration and Review
send mail through Mail, so they are built after it: registration, not constructor arguments,
breaks that construction cycle, and the call sites show every arrow. `listen` registers those
told after a commit (`MailNews`).

Headers are built with the standard `email` package, which refuses CR or LF in a header value,
so no input can inject a header. HTML is sanitised with nh3 before any console sees it.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Protocol

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime

from dispatcher.domain import events as ev
from dispatcher.domain.categories import Prequalified
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.events import (
    EMAIL_ACK_SKIPPED,
    EMAIL_AUTOMATIC,
    EMAIL_BOUNCED,
    EMAIL_DEAD,
    EMAIL_DELAYED,
    EMAIL_LINKED,
    EMAIL_QUEUED,
    EMAIL_RECEIVED,
    EMAIL_REOPENED,
    EMAIL_RETRY,
    EMAIL_SENT,
)
from dispatcher.domain.tasks import OPEN_STATES, Channel, Task, TaskState

from .assignment import Assignment
from .compose import (
    MAX_REFERENCES,
    Draft,
    build,
    html_to_text,
    named,
    one_line,
    reply_recipients,
    safe_html,
)
from .intake import Intake, email_identity
from .ports import (
    ACK_KIND,
    Changes,
    DeliveryReport,
    Identity,
    MailAttachment,
    MailMessage,
    NewMail,
    OutboundMail,
    OutboxItem,
    Store,
    StoredMail,
    Upload,
    UploadStore,
)

log = logging.getLogger(__name__)

OUTBOX_EMAIL = "email"
# Actions of `receive`.
NEW, JOINED, REOPENED, LINKED = "new", "joined", "reopened", "linked"
RECORDED = "recorded"  # automatic mail or a delivery report kept without a task's routing
# Why a message from the thread's customer opened a linked task instead of joining.
NOT_AUTHENTICATED = "sender not authenticated"
# Kinds of automatic mail (the edge's reading of RFC 3834 signs).
AUTO_REPLY, AUTO_GENERATED, BULK = "auto_reply", "auto_generated", "bulk"
KIND_AUTO, KIND_DSN = "auto_reply", "dsn"

DAY = 86_400.0
PREVIEW_CHARS = 200
ACKED = "already acknowledged within the period"  # why a sender gets no acknowledgement
# Senders acknowledged that `Mail` remembers before it drops those past the period (the least
# its limit becomes; `_ack_taken`).
ACKED_KEPT = 1024
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # one file an agent attaches
MAX_UPLOADS = 10  # files on one reply
UPLOAD_DAYS = 7.0  # an upload no reply used is dropped after this
MAX_FILENAME_CHARS = 200


@functools.lru_cache(maxsize=8)
def _number_pattern(prefix: str) -> re.Pattern[str]:
    """`[#<prefix><digits>]` in a subject, compiled once per prefix (read for every message)."""
    return re.compile(r"\[#" + re.escape(prefix) + r"(\d{1,18})\]")


@dataclass(frozen=True)
class MailPolicy:
    """How the e-mail channel behaves (built by the edge from its settings)."""

    request_prefix: str = "SB-"
    request_digits: int = 6
    reopen_window: float = 14 * DAY
    sticky_seconds: float = 3600.0
    ack_queues: frozenset[str] = frozenset({"*"})  # "*" = every queue
    ack_period: float = DAY
    from_address: str = "support@switchboard.invalid"
    from_name: str = "Support"
    message_id_domain: str = "switchboard.invalid"
    ack_subject: str = "We received your message [#{request}]"
    ack_body: str = (
        "Hello,\n\nthank you for your message. Your request number is {request}; please keep "
        "it in the subject of any reply.\nWe will answer {deadline}.\n"
    )
    retry_base: float = 60.0
    retry_max: float = 3600.0
    max_attempts: int = 8
    # Replies: the From address per queue ((queue, address), ...; else from_address), the
    # signature (per queue, else the default; placeholders {agent_name} {queue} {request}
    # {from_name}), our own addresses and domains (never Cc'd on a reply to all), and whether a
    # relay is configured at all (without one, replies stay queued: the console says so).
    queue_from: tuple[tuple[str, str], ...] = ()
    signature: str = "{agent_name}\n{from_name}"
    queue_signatures: tuple[tuple[str, str], ...] = ()
    own_addresses: frozenset[str] = frozenset()
    own_domains: frozenset[str] = frozenset()
    relay: bool = False

    def from_for(self, queue: str) -> str:
        return dict(self.queue_from).get(queue) or self.from_address

    def signature_for(self, queue: str) -> str:
        return dict(self.queue_signatures).get(queue, self.signature)

    def label(self, number: int) -> str:
        return f"{self.request_prefix}{number:0{self.request_digits}d}"

    def find_number(self, subject: str) -> int | None:
        m = _number_pattern(self.request_prefix).search(subject or "")
        return int(m.group(1)) if m else None

    def acks(self, queue: str) -> bool:
        return "*" in self.ack_queues or queue in self.ack_queues


@dataclass(frozen=True)
class InboundMail:
    """A received message as the edge understood it (parsing never fails: what could not be
    read is in `defects`, and `malformed` says so)."""

    raw: bytes
    queue: str
    envelope_from: str = ""  # "" = null sender (<>)
    recipients: tuple[str, ...] = ()
    from_address: str | None = None
    from_name: str = ""
    to_addrs: tuple[str, ...] = ()
    cc_addrs: tuple[str, ...] = ()
    reply_to: str | None = None
    subject: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    text: str = ""
    html: str = ""
    attachments: tuple[MailAttachment, ...] = ()
    defects: tuple[str, ...] = ()
    malformed: bool = False
    auto_generated: bool = False  # RFC 3834 signs, decided by the edge's header reading
    automatic: str | None = None  # AUTO_REPLY | AUTO_GENERATED | BULK | None (a person)
    suppress_auto: bool = False  # X-Auto-Response-Suppress: send it no automatic mail
    dsn: DeliveryReport | None = None  # a delivery status notification (RFC 3464)
    source: str | None = None
    # A web form submission (channels/email/form.py): its fields and pre-qualification.
    form: Prequalified | None = None
    # The edge's sender checks (channels/email/authenticity.py): True when a DKIM/SPF/DMARC
    # pass is aligned with the domain of `from_address`; `auth_summary` says what was seen.
    authenticated: bool = False
    auth_summary: str = ""


@dataclass(frozen=True)
class Received:
    task_id: str
    request: str
    action: str  # new | joined | reopened | linked
    customer_id: str | None
    acknowledged: bool = False
    linked_to: str | None = None
    new_customer: bool = False  # this mail created its customer (a new address)


@dataclass
class _Outgoing:
    message: MailMessage
    outbox: OutboxItem
    event: ev.Event


@dataclass(frozen=True)
class MailNews:
    """Told to listeners after a commit: a message joined a task's thread (`status` None), or
    one of ours changed delivery status (queued, sent, retrying, dead, bounced)."""

    task_id: str
    message: str | None  # MailMessage.id
    status: str | None = None
    error: str | None = None
    kind: str | None = None


_message_seq = itertools.count()


def new_message_id(now: float) -> str:
    """A message row id that sorts in creation order (time, then a process counter)."""
    return f"{int(now * 1_000_000):015x}{next(_message_seq) % 0xFFFFFF:06x}{uuid.uuid4().hex[:11]}"


class Codifier(Protocol):
    """Codification (dispatcher.service.codification) as Mail sees it."""

    def codify(self, mail: InboundMail, task: Task) -> Awaitable[Verdict]:
        """For a message that opens a task, before it is stored: may change the task's queue,
        priority, skills, attributes (in place)."""
        ...


class Verdict(Protocol):
    """What a Codifier decided about a new task."""

    events: list[ev.Event]  # stored with the task, in the same transaction
    acknowledge: bool  # False: no acknowledgement goes out (e.g. spam)


class Interceptor(Protocol):
    """Collaboration (dispatcher.service.collaboration) as Mail sees it."""

    def intercept(self, mail: InboundMail) -> Awaitable[Received | None]:
        """Before threading: a Received when the message was taken (an expert's answer to a
        consult), None to go on as usual."""
        ...


class AutoAnswer(Protocol):
    """Review's automatic mode (dispatcher.service.review) as Mail sees it."""

    def may_take(self, task: Task) -> bool:
        """Before a new task's commit: False when the automatic mode surely leaves it to the
        agents (the rule of its queue and category is not automatic); it is then routed in
        its intake's transaction."""
        ...

    def automatic(self, task: Task, inbound: InboundMail) -> bool:
        """After a new task is committed: True when it took the task (answered it, held it
        for review, or decides once its index is built and routes it then if need be), so
        that it must not be routed."""
        ...


class Mail:
    def __init__(
        self,
        assignment: Assignment,
        store: Store,
        clock: IReactorTime,
        intake: Intake,
        policy: MailPolicy | None = None,
        new_id: Any = None,
        uploads: UploadStore | None = None,
    ) -> None:
        self.assignment = assignment
        self.uploads = uploads
        self.router = assignment.router
        self.store = store
        self.clock = clock
        self.intake = intake
        self.policy = policy or MailPolicy()
        self.new_id = new_id or intake.new_id
        # peer -> when this process last acknowledged them; those past the ack period are
        # dropped whenever the map doubles (`_ack_taken`): the store answers for them.
        self._acked: dict[str, float] = {}
        self._acked_limit = ACKED_KEPT
        # What Mail calls out to (see "Wiring" in the module docstring): registered once, by
        # the composition root, through the methods below.
        self._codifier: Codifier | None = None
        self._interceptor: Interceptor | None = None
        self._auto_answer: AutoAnswer | None = None
        self._listeners: list[Callable[[MailNews], None]] = []

    def codify_with(self, codifier: Codifier) -> None:
        """Codify every message that opens a task, before its commit (Codification)."""
        self._codifier = self._once(self._codifier, codifier, "codifier")

    def intercept_with(self, interceptor: Interceptor) -> None:
        """Offer every inbound message to `interceptor` before threading (Collaboration: an
        expert's answer to a consult)."""
        self._interceptor = self._once(self._interceptor, interceptor, "interceptor")

    def answer_with(self, auto_answer: AutoAnswer) -> None:
        """Ask `auto_answer` about every new task after its commit, before routing (Review's
        automatic mode)."""
        self._auto_answer = self._once(self._auto_answer, auto_answer, "automatic answer")

    @staticmethod
    def _once(current: Any, new: Any, what: str) -> Any:
        if current is not None and current is not new:
            raise ValueError(f"Mail already has a {what}")
        return new

    def listen(self, fn: Callable[[MailNews], None]) -> None:
        """Call `fn(news)` after each commit that adds a message to a task's thread or changes
        the delivery status of one of ours (the console pushes it to the task's agent)."""
        self._listeners.append(fn)

    def _tell(self, news: MailNews) -> None:
        for fn in self._listeners:
            try:
                fn(news)
            except Exception:
                log.exception("mail listener failed on %s", news)

    def _told(self, result: Any, news: MailNews) -> Any:
        self._tell(news)
        return result

    def configure(self, policy: MailPolicy) -> None:
        """Set the channel's policy (the edge does it once, from its settings)."""
        self.policy = policy

    def now(self) -> float:
        return self.clock.seconds()

    # ------------------------------------------------------------------ inbound

    def receive(self, mail: InboundMail) -> Deferred[Received]:
        """Store the message in a new or existing task; fires after the commit."""
        return ensureDeferred(self._receive(mail))

    async def _receive(  # noqa: C901 - the threading rules for inbound mail, in order
        self, mail: InboundMail
    ) -> Received:
        if mail.dsn is not None:
            return await self._report(mail)
        if self._interceptor is not None:
            taken = await self._interceptor.intercept(mail)
            if taken is not None:
                self._tell(MailNews(taken.task_id, None))
                return taken
        identity = self._identity(mail)
        number = self.policy.find_number(mail.subject)
        ids = [i for i in ((mail.in_reply_to,) + tuple(mail.references)) if i][-MAX_REFERENCES:]
        if mail.form is not None:
            # The public form proves nothing about who typed it: it never names a thread (and
            # so its answer cannot tell whether a request number exists or whose it is).
            number, ids = None, []
        thread = None
        if number is not None or ids:
            thread = await self.store.find_mail_task(number, ids)
        if (thread is not None and mail.automatic in (AUTO_REPLY, AUTO_GENERATED)
                and not await self._vouched(mail, thread, ids)):
            thread = None  # a robot's mail that only names a request number: kept alone
        if mail.automatic in (AUTO_REPLY, AUTO_GENERATED) and (
                thread is not None or mail.automatic == AUTO_REPLY):
            # RFC 3834: a robot's answer (an out-of-office, a ticket robot) is kept on the
            # thread it answers; it never reopens a task nor opens one.
            return await self._record(mail, identity, thread)
        if thread is not None and thread.channel is Channel.EMAIL:
            if not await self._is_customer(thread, identity):
                return await self._new(mail, identity, thread, "sender is not the customer")
            if not await self._vouched(mail, thread, ids):
                return await self._new(mail, identity, thread, NOT_AUTHENTICATED)
            # The store is the truth (not this process's router, which may hold no task of
            # the thread: another node's, or an intake-only node): `find_mail_task` reads
            # after every write this process queued, so a task just completed reads completed.
            if thread.state in OPEN_STATES:
                return await self._join(thread, mail, identity)
            if (thread.state is TaskState.COMPLETED
                    and self.now() - (thread.updated_at or 0) <= self.policy.reopen_window):
                return await self._reopen(thread, mail, identity)
            return await self._new(mail, identity, thread, "thread closed")
        return await self._new(mail, identity)

    def _identity(self, mail: InboundMail) -> Identity | None:
        for address in (mail.from_address, mail.envelope_from):
            if address:
                try:
                    return email_identity(address)
                except InvalidValue:
                    continue
        return None

    async def _vouched(self, mail: InboundMail, thread: Task, ids: Sequence[str]) -> bool:
        """Is the message really from its sender, as far as the thread is concerned? Either
        the edge authenticated it (a DKIM/SPF/DMARC pass aligned with its From domain), or it
        names (In-Reply-To/References) one of the Message-IDs we sent on this thread: those
        carry 128 random bits (compose.build), so only someone who received our mail knows
        one. A request number alone is guessable and proves nothing."""
        if mail.authenticated:
            return True
        if not ids:
            return False
        ours = {m.message_id for m in await self.store.mail_messages(thread.id, content=False)
                if m.direction == "out" and m.message_id}
        return any(i in ours for i in ids)

    async def _is_customer(self, task: Task, identity: Identity | None) -> bool:
        if identity is None or task.customer_id is None:
            return False
        customer = await self.store.find_customer(identity)
        return customer is not None and customer.id == task.customer_id

    def _message(self, mail: InboundMail, task_id: str, identity: Identity | None,
                 kind: str = "customer") -> MailMessage:
        return MailMessage(
            id=new_message_id(self.now()), task_id=task_id, direction="in", kind=kind,
            created_at=self.now(), raw=mail.raw, message_id=mail.message_id,
            in_reply_to=mail.in_reply_to, references=tuple(mail.references),
            peer=identity.value if identity else None, from_addr=mail.from_address,
            to_addrs=tuple(mail.to_addrs), subject=mail.subject, text=mail.text, html=mail.html,
            defects=tuple(mail.defects), malformed=mail.malformed, source=mail.source,
            attachments=tuple(mail.attachments), cc_addrs=tuple(mail.cc_addrs),
            reply_to=mail.reply_to,
        )

    def _received_event(self, msg: MailMessage, mail: InboundMail, action: str,
                        request: str) -> ev.Event:
        return ev.Event(EMAIL_RECEIVED, msg.created_at, msg.task_id, actor=f"email:{msg.peer}",
                        data={"message": msg.id, "message_id": mail.message_id,
                              "from": mail.from_address, "subject": mail.subject,
                              "action": action, "request": request, "source": mail.source,
                              "malformed": mail.malformed,
                              "attachments": len(mail.attachments),
                              "authenticated": mail.authenticated,
                              "auth": mail.auth_summary or None})

    async def _new(self, mail: InboundMail, identity: Identity | None,
                   linked_to: Task | None = None, why: str = "") -> Received:
        attributes: dict[str, Any] = {"subject": mail.subject, "from": mail.from_address}
        # Stored with the task, not among the attributes the router holds (NewMail.preview).
        preview = (mail.text or html_to_text(mail.html))[:PREVIEW_CHARS]
        if linked_to is not None:
            attributes["linked_to"] = linked_to.id
            attributes["link_reason"] = why  # shown with the link (console, tasks show)
        # Drafted, committed and routed by Intake (the one path of every new task): the queue
        # checks, the deadline rule and the `task.created` event are Intake's.
        task = self.intake.draft(Channel.EMAIL, mail.queue, attributes=attributes,
                                 task_id=self.new_id())
        codified = await self._codifier.codify(mail, task) if self._codifier else None
        msg = self._message(mail, task.id, identity)
        action = LINKED if linked_to else NEW
        events: list[ev.Event] = []
        if linked_to is not None:
            events.append(ev.Event(EMAIL_LINKED, task.created_at, task.id,
                                   data={"linked_to": linked_to.id, "reason": why}))
        if codified is not None:
            events.extend(codified.events)
        ask: str | None = None  # the sender whose last acknowledgement the store reads
        if codified is not None and not codified.acknowledge:
            events.append(ev.Event(EMAIL_ACK_SKIPPED, task.created_at, task.id,
                                   data={"reason": "spam"}))
            acks = False
        else:
            acks, ask = self._acks(mail, task, msg, events)
        # The request number is given by the store, in the transaction that stores the task:
        # what names it (the task's attributes, the received event, the acknowledgement) is
        # made there by `numbered`, pure (it may run on the store's thread).
        policy, now = self.policy, self.now()
        ack_id = new_message_id(now) if acks else ""

        def numbered(number: int, last_ack: float | None) -> NewMail:
            request = policy.label(number)
            made = replace(task, attributes={**task.attributes, "request_number": number,
                                             "request": request})
            received = self._received_event(msg, mail, action, request)
            if acks and last_ack is not None and now - last_ack < policy.ack_period:
                # Acknowledged within the period, as the store knows (by another process, or
                # by this one before it started): none again.
                return NewMail(made, [received, *events, ev.Event(
                    EMAIL_ACK_SKIPPED, task.created_at, task.id, data={"reason": ACKED})], [msg],
                    preview=preview)
            if not acks:
                return NewMail(made, [received, *events], [msg], preview=preview)
            ack = self._ack(policy, made, request, msg, now, ack_id)
            return NewMail(made, [received, *events, ack.event], [msg, ack.message],
                           [ack.outbox], preview)

        automatic = self._auto_answer is not None and self._auto_answer.may_take(task)
        try:
            if not automatic:
                # Routed, and committed with its routing (Intake.commit_routed).
                stored = await self.intake.commit_routed(task, identity, mail.from_name,
                                                         events, [msg], (), numbered, ask)
            else:
                stored = await self.intake.commit(task, identity, mail.from_name, events,
                                                  [msg], numbered=numbered, ack_peer=ask)
        except Exception:
            if acks:  # nothing was sent: the sender's retry is acknowledged
                self._ack_not_sent(msg.peer)
            raise
        acks = acks and self._ack_stored(stored, msg.peer)
        # The automatic answer (AutoAnswer) may, after the commit, answer the new task without
        # an agent (or hold it for review) instead of routing it.
        if (automatic and self._auto_answer is not None
                and not self._auto_answer.automatic(stored.mail.task, mail)):
            self.intake.route(stored.mail.task)
        return Received(stored.mail.task.id, policy.label(stored.number), action, stored.customer_id,
                        acknowledged=acks, linked_to=linked_to.id if linked_to else None,
                        new_customer=stored.new is not None)

    async def _join(self, task: Task, mail: InboundMail, identity: Identity | None) -> Received:
        request = self._request_of(task)
        msg = self._message(mail, task.id, identity)
        event = self._received_event(msg, mail, JOINED, request)
        await self.store.add_mail([msg], Changes(events=[event]))
        self._tell(MailNews(task.id, msg.id, kind=msg.kind))
        return Received(task.id, request, JOINED, task.customer_id)

    # ------------------------------------------------------------------ robots' mail

    async def _record(self, mail: InboundMail, identity: Identity | None,
                      thread: Task | None) -> Received:
        """Keep automatic mail on the thread it answers, as it is: no reopening, no routing, no
        acknowledgement. Without a thread it is kept on no task (`task_id` "")."""
        task_id = thread.id if thread is not None else ""
        msg = self._message(mail, task_id, identity, kind=KIND_AUTO)
        events = [ev.Event(EMAIL_AUTOMATIC, msg.created_at, task_id, actor=f"email:{msg.peer}",
                           data={"message": msg.id, "kind": mail.automatic,
                                 "from": mail.from_address, "subject": mail.subject})
                  ] if thread is not None else []
        await self.store.add_mail([msg], Changes(events=events))
        if thread is None:
            log.info("automatic mail from %s kept without a task (it answers none of ours)",
                     msg.peer)
            return Received("", "", RECORDED, None)
        self._tell(MailNews(task_id, msg.id, kind=msg.kind))
        return Received(task_id, self._request_of(thread), RECORDED, thread.customer_id)

    async def _report(self, mail: InboundMail) -> Received:
        """A delivery status notification: the message of ours it is about becomes `bounced`
        (a failed delivery, with the reason) and the report is kept on its thread; a
        `delayed` report is only recorded. A report about nothing we sent is kept alone."""
        report = mail.dsn
        ours = None
        if report.original_message_id:
            ours = await self.store.mail_message(message_id=report.original_message_id,
                                                 direction="out")
        task_id = ours.task_id if ours is not None else ""
        msg = self._message(mail, task_id, None, kind=KIND_DSN)
        if ours is None:
            await self.store.add_mail([msg], Changes())
            log.info("delivery report about %s kept without a task (not one of ours)",
                     report.original_message_id)
            return Received("", "", RECORDED, None)
        failed = [r for r in report.recipients if r.action == "failed"]
        first = (failed or list(report.recipients) or [None])[0]
        reason = (first.diagnostic or first.status) if first is not None else ""
        data = {"message": ours.id, "report": msg.id,
                "recipient": first.recipient if first else None,
                "status": first.status if first else None, "reason": reason}
        kind = EMAIL_BOUNCED if report.failed else EMAIL_DELAYED
        event = ev.Event(kind, msg.created_at, task_id, actor="email:postmaster", data=data)
        if report.failed:
            error = f"bounced: {reason}" if reason else "bounced"
            await self.store.mark_mail(ours.id, "bounced", error[:500], [msg],
                                       Changes(events=[event]))
            self._tell(MailNews(task_id, ours.id, "bounced", error[:500], kind=ours.kind))
        else:
            await self.store.add_mail([msg], Changes(events=[event]))
        self._tell(MailNews(task_id, msg.id, kind=msg.kind))
        task = await self.store.find_mail_task(task_id=task_id)
        return Received(task_id, self._request_of(task) if task else "", RECORDED,
                        task.customer_id if task else None)

    async def _reopen(self, old: Task, mail: InboundMail, identity: Identity | None) -> Received:
        request = self._request_of(old)
        previous = await self._last_agent(old)
        now = self.now()
        attributes = dict(old.attributes)
        attributes["reopened"] = int(attributes.get("reopened", 0)) + 1
        if previous is not None:
            attributes["preferred_agent"] = previous
            attributes["preferred_until"] = now + self.policy.sticky_seconds
        task = self.intake.draft(Channel.EMAIL, old.queue, attributes=attributes, task_id=old.id)
        task = replace(task, customer_id=old.customer_id, priority=old.priority,
                       base_skills=dict(old.base_skills), required_skills={})
        msg = self._message(mail, task.id, identity)
        events = [
            self._received_event(msg, mail, REOPENED, request),
            ev.Event(EMAIL_REOPENED, now, task.id,
                     data={"previous_agent": previous, "completed_at": old.updated_at,
                           "preferred_until": attributes.get("preferred_until")}),
        ]
        await self.store.add_mail([msg], Changes(tasks=[task], events=events))
        self.intake.route(task)
        return Received(task.id, request, REOPENED, task.customer_id)

    async def _last_agent(self, task: Task) -> str | None:
        if task.agent_id:
            return task.agent_id
        trail = await self.store.task_events(task.id)
        for e in reversed(trail):
            if e.kind == ev.TASK_ASSIGNED and e.agent_id:
                return e.agent_id
        return None

    def _request_of(self, task: Task) -> str:
        number = task.attributes.get("request_number")
        return self.policy.label(int(number)) if number is not None else ""

    # ------------------------------------------------------------------ acknowledgement

    def _acks(self, mail: InboundMail, task: Task, msg: MailMessage,
              events: list[ev.Event]) -> tuple[bool, str | None]:
        """Is an acknowledgement due (RFC 3834: never to automatic mail; at most one per sender
        per period)? If not, the reason goes into the trail. Second: the sender whose last
        acknowledgement the storing transaction must read (one this process did not make in
        the period, or a restart ago, may be in the store: `numbered` decides there), or None
        when this process knows."""
        reason = self._no_ack_reason(mail, task.queue, msg.peer)
        if reason is not None:
            events.append(ev.Event(EMAIL_ACK_SKIPPED, task.created_at, task.id,
                                   data={"reason": reason}))
            return False, None
        known = msg.peer in self._acked  # acknowledged by this process, before the period
        self._ack_taken(msg.peer)
        return True, None if known else msg.peer

    def _ack_taken(self, peer: str | None) -> None:
        """`peer` is acknowledged now (taken before the commit, so that two mails in flight
        from one sender make one acknowledgement). When the map reaches its limit, the
        entries past the period go and the limit becomes twice what is left (at least
        ACKED_KEPT): at most about twice the period's senders, at O(1) a mail on average."""
        if peer is None:
            return
        now = self.now()
        self._acked[peer] = now
        if len(self._acked) >= self._acked_limit:
            horizon = now - self.policy.ack_period
            self._acked = {p: at for p, at in self._acked.items() if at >= horizon}
            self._acked_limit = max(ACKED_KEPT, 2 * len(self._acked))

    def _ack_stored(self, stored: StoredMail, peer: str | None) -> bool:
        """Was the acknowledgement this process took stored? Not when the storing transaction
        found one within the period (`numbered`): the sender's next mail is then left to the
        store again."""
        if any(m.kind == ACK_KIND for m in stored.mail.messages):
            return True
        self._ack_not_sent(peer)
        return False

    def _ack_not_sent(self, peer: str | None) -> None:
        """The acknowledgement taken for `peer` was not committed (its mail was not stored)."""
        if peer is not None:
            self._acked.pop(peer, None)

    def _ack(self, p: MailPolicy, task: Task, request: str, msg: MailMessage, now: float,
             message_id: str) -> _Outgoing:
        """The acknowledgement of a new task (pure: made in the storing transaction, once
        the request number is known)."""
        deadline = ("by " + format_datetime(datetime.fromtimestamp(task.deadline, UTC))
                    if task.deadline is not None else "as soon as possible")
        values = {"request": request, "deadline": deadline}
        subject = p.ack_subject.format(**values)
        body = p.ack_body.format(**values)
        draft = Draft(kind=ACK_KIND, from_name=p.from_name, from_address=p.from_for(task.queue),
                      to=msg.peer, subject=subject, text=body, answering=msg, automatic=True,
                      html_part=False)
        return self._outgoing(task.id, msg.peer, draft, ev.SYSTEM, now=now, id=message_id,
                              domain=p.message_id_domain)

    def _no_ack_reason(self, mail: InboundMail, queue: str, peer: str | None) -> str | None:
        if not self.policy.acks(queue):
            return "queue sends no acknowledgement"
        if not mail.envelope_from or peer is None:
            return "null sender"
        if mail.auto_generated:
            return "automatic message (RFC 3834)"
        if mail.suppress_auto:
            return "the sender asked for no automatic replies (X-Auto-Response-Suppress)"
        last = self._acked.get(peer)
        if last is not None and self.now() - last < self.policy.ack_period:
            return ACKED
        return None

    # ------------------------------------------------------------------ outbound

    def _outgoing(self, task_id: str, to: str, draft: Draft, actor: str,
                  mode: str | None = None, answer_id: str | None = None, *,
                  now: float | None = None, id: str | None = None,
                  domain: str | None = None) -> _Outgoing:
        """The message `draft` makes, its outbox item and its `email.queued` event (not stored
        yet); `to` is the bare address of `draft.to`. Given `now`, `id` and `domain` it reads
        nothing of this object (the acknowledgement is made on the store's thread)."""
        now = self.now() if now is None else now
        kind = draft.kind
        built = build(draft, now, self.policy.message_id_domain if domain is None else domain)
        msg = MailMessage(
            id=new_message_id(now) if id is None else id, task_id=task_id, direction="out", kind=kind,
            created_at=now, raw=built.raw, message_id=built.message_id,
            in_reply_to=built.in_reply_to, references=built.references, peer=to.lower(),
            from_addr=draft.from_address, to_addrs=(to,), cc_addrs=tuple(draft.cc),
            subject=one_line(draft.subject), text=draft.text,
            html=safe_html(draft.html) if draft.html else "",
            status="queued", attachments=tuple(draft.attachments),
        )
        item = OutboxItem(OUTBOX_EMAIL, task_id,
                          {"message": msg.id, "mail_from": draft.from_address,
                           "rcpt": [to, *draft.cc]}, now)
        event = ev.Event(EMAIL_QUEUED, now, task_id, actor=actor,
                         data={"message": msg.id, "kind": kind, "to": to,
                               "cc": list(draft.cc) or None,
                               "message_id": msg.message_id, "subject": msg.subject,
                               "mode": mode, "answer_id": answer_id,
                               "attachments": len(draft.attachments) or None})
        return _Outgoing(msg, item, event)

    # ------------------------------------------------------------------ agents' files

    def upload(self, owner: str, filename: str, content_type: str, content: bytes
               ) -> Deferred[Upload]:
        """Keep a file an agent will attach to a reply; fires once committed."""
        return ensureDeferred(self._upload(owner, filename, content_type, content))

    async def _upload(self, owner: str, filename: str, content_type: str,
                      content: bytes) -> Upload:
        if self.uploads is None:
            raise InvalidValue("attachments are not available here")
        name = one_line(re.split(r"[\\/]", filename or "")[-1])[:MAX_FILENAME_CHARS].strip()
        if not name or name in (".", ".."):
            raise InvalidValue("an attachment needs a file name")
        if len(content) > MAX_UPLOAD_BYTES:
            raise InvalidValue(f"an attachment has at most {MAX_UPLOAD_BYTES} bytes")
        kind = content_type.split(";")[0].strip().lower()
        if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", kind):
            kind = "application/octet-stream"
        now = self.now()
        upload = Upload(uuid.uuid4().hex, owner, name, kind, len(content), bytes(content), now)
        await self.uploads.prune(now - UPLOAD_DAYS * DAY)
        await self.uploads.put(upload)
        return upload

    async def _attachments(self, owner: str, ids: Sequence[str]
                           ) -> tuple[MailAttachment, ...]:
        if not ids:
            return ()
        if self.uploads is None:
            raise InvalidValue("attachments are not available here")
        if len(ids) > MAX_UPLOADS:
            raise InvalidValue(f"at most {MAX_UPLOADS} attachments on one reply")
        found = await self.uploads.take(owner, ids)
        if len(found) != len(set(ids)):
            raise InvalidValue("an attachment is gone (upload it again)")
        return tuple(MailAttachment(u.filename, u.content_type, u.size, u.content)
                     for u in found)

    # ------------------------------------------------------------------ replies

    def reply(self, task_id: str, agent_id: str, text: str,
              html: str | None = None, mode: str | None = None,
              answer_id: str | None = None, reply_all: bool = False,
              uploads: Sequence[str] = (), quote: bool = True,
              ) -> Deferred[MailMessage]:
        """Queue an agent's answer to the customer; fires with the stored message once
        committed. `mode` (free | assisted | suggested | automatic) and `answer_id` (the
        library answer used, if any) go into the `email.queued` event for the reports.
        `reply_all` keeps the other recipients as Cc; `quote` quotes the message answered;
        `uploads` are ids of the agent's files (`upload`), attached and then dropped."""
        return ensureDeferred(self._reply(task_id, agent_id, text, html, mode, answer_id,
                                          reply_all, tuple(uploads), quote))

    async def _reply(self, task_id: str, agent_id: str, text: str, html: str | None,
                     mode: str | None = None, answer_id: str | None = None,
                     reply_all: bool = False, uploads: tuple[str, ...] = (),
                     quote: bool = True, owner: str | None = None) -> MailMessage:
        out = await self.compose_reply(task_id, ev.agent_actor(agent_id), text, html, mode,
                                       answer_id, reply_all=reply_all, uploads=uploads,
                                       quote=quote, agent_id=agent_id, owner=owner)
        await self.store.add_mail([out.message], Changes(events=[out.event], outbox=[out.outbox]))
        self._tell(MailNews(task_id, out.message.id, "queued", kind="reply"))
        await self.used(uploads)
        return out.message

    async def used(self, uploads: Sequence[str]) -> None:
        """Drop uploads a committed reply carries (a failure leaves them to `prune`)."""
        if uploads and self.uploads is not None:
            try:
                await self.uploads.drop(uploads)
            except Exception:  # noqa: BLE001 - the reply is committed; prune gets them
                log.warning("could not drop %d used uploads", len(uploads))

    async def compose_reply(self, task_id: str, actor: str, text: str, html: str | None,
                            mode: str | None = None, answer_id: str | None = None,
                            reply_all: bool = False, uploads: Sequence[str] = (),
                            quote: bool = True, agent_id: str | None = None,
                            owner: str | None = None) -> _Outgoing:
        """The reply to the task's last customer message (message, outbox item, event),
        built but not stored: the caller commits it with its own changes (a reviewer's
        decision, an automatic answer that completes the task). From the queue's address,
        signed with the queue's signature, the original quoted; `uploads` of `owner` (by
        default the agent) attached."""
        task = self.router.tasks.get(task_id) or await self.store.find_mail_task(task_id=task_id)
        if task is None:
            raise InvalidValue(f"no such e-mail task: {task_id}")
        conversation = await self.store.mail_messages(task_id)
        inbound = [m for m in conversation
                   if m.direction == "in" and m.kind == "customer" and m.peer]
        if not inbound:
            raise InvalidValue(f"task {task_id} has no customer address to answer")
        last = inbound[-1]
        p = self.policy
        to, cc = reply_recipients(last, p.own_addresses | {p.from_for(task.queue)},
                                  p.own_domains, reply_all, inbound)
        request = self._request_of(task)
        subject = re.sub(r"^\s*((re|aw|fwd?)\s*:\s*)+", "", last.subject or "", flags=re.I)
        subject = re.sub(r"\s*\[#" + re.escape(p.request_prefix) + r"\d+\]", "", subject)
        subject = f"Re: {subject.strip()} [#{request}]" if request else f"Re: {subject.strip()}"
        automatic = mode == "automatic"
        attachments = await self._attachments(owner or agent_id or "", uploads)
        draft = Draft(
            kind="reply", from_name=p.from_name, from_address=p.from_for(task.queue),
            to=named(to, last),
            cc=cc, subject=subject, text=text, html=html, answering=last, quote=quote,
            signature=self._signature(task, request, agent_id), automatic=automatic,
            attachments=attachments)
        return self._outgoing(task_id, to, draft, actor, mode, answer_id)

    def _signature(self, task: Task, request: str, agent_id: str | None) -> str:
        agent = self.router.agents.get(agent_id) if agent_id else None
        values = {"agent_name": (agent.name or agent.id) if agent else self.policy.from_name,
                  "queue": task.queue, "request": request, "from_name": self.policy.from_name}
        template = self.policy.signature_for(task.queue)
        try:
            return template.format(**values).strip()
        except (KeyError, IndexError, ValueError):
            log.warning("signature of queue %s has unknown placeholders; sent as written",
                        task.queue)
            return template.strip()

    def due(self, limit: int = 100) -> Deferred[list[OutboundMail]]:
        return self.store.due_mail(self.now(), limit)

    def sent(self, item: OutboundMail, reply: str = "") -> Deferred[None]:
        attempts = item.attempts + 1
        event = ev.Event(EMAIL_SENT, self.now(), item.task_id,
                         data={"message": item.message, "attempts": attempts, "reply": reply})
        d = self.store.settle_mail(item.outbox_id, item.message, "sent", attempts, None, None,
                                   [event] if item.task_id else [])
        return d.addCallback(self._told, MailNews(item.task_id or "", item.message, "sent"))

    def failed(self, item: OutboundMail, code: int | None, error: str) -> Deferred[None]:
        """A delivery attempt failed: `code` is the SMTP reply code, None for a network error.
        5xx is final; anything else is retried with backoff until `max_attempts`."""
        attempts = item.attempts + 1
        now = self.now()
        final = (code is not None and 500 <= code < 600) or attempts >= self.policy.max_attempts
        if final:
            event = ev.Event(EMAIL_DEAD, now, item.task_id,
                             data={"message": item.message, "attempts": attempts, "code": code,
                                   "error": error})
            d = self.store.settle_mail(item.outbox_id, item.message, "dead", attempts, None,
                                       error, [event] if item.task_id else [])
            return d.addCallback(self._told, MailNews(item.task_id or "", item.message, "dead",
                                                      error))
        delay = min(self.policy.retry_max, self.policy.retry_base * 2 ** (attempts - 1))
        event = ev.Event(EMAIL_RETRY, now, item.task_id,
                         data={"message": item.message, "attempts": attempts, "code": code,
                               "error": error, "next_attempt_at": now + delay})
        d = self.store.settle_mail(item.outbox_id, item.message, "retrying", attempts,
                                   now + delay, error, [event] if item.task_id else [])
        return d.addCallback(self._told, MailNews(item.task_id or "", item.message, "retrying",
                                                  error))

    # ------------------------------------------------------------------ reading

    def conversation(self, task_id: str) -> Deferred[list[MailMessage]]:
        """The task's messages, HTML sanitised (what a console may show)."""
        d = self.store.mail_messages(task_id)
        d.addCallback(lambda msgs: [replace(m, html=safe_html(m.html)) for m in msgs])
        return d
