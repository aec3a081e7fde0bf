"""Collaboration on a task: internal notes, expert consults by e-mail, transfer with a note,
reminders, and redirecting a misdirected e-mail.

Sits in the service layer, beside `Mail` (it sends through the same outbox and reads the same
conversations). What it promises:

- `note`: an internal note, stored with a `task.note` event in one commit; never sent to the
  customer. An agent may note only a task they hold; supervisors any task. `notes` and
  `consults` are read by the agent the open task is with, or a supervisor (`Forbidden` for
  anyone else, whoever calls: the console only translates).
- `consult`: the agent holding a task asks an outside expert by e-mail; the subject carries the
  request number and an unguessable token (`[consult <token>]`). `intercept` (hooked before
  `Mail`'s threading) takes the expert's reply, from the consulted address only, into the task
  as an internal message (kind `consult`, no customer address: a reply to the customer never
  goes to the expert), with a `consult.answered` event. The task stays with the agent.
- `transfer`: Sessions' transfer plus a note saying why.
- `remind`: the task leaves the agent (completed with disposition `reminder`) and comes back at
  `due_at`, to the same agent first (the router's stickiness), with its deadline pushed back by
  the business time it waited (`extend_for_pause`). Reminders are stored; `start` re-arms them
  after a restart (overdue ones fire at once). A task that came back earlier (the customer
  wrote) makes its reminder `superseded`.
- `redirect`: the original message is forwarded (as a message/rfc822 attachment) to an outside
  address through the outbox, then the task is completed with disposition `redirected`; both
  are in the trail.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, fail
from twisted.internet.interfaces import IReactorTime

from dispatcher.domain import events as ev
from dispatcher.domain.deadlines import ALWAYS_OPEN, extend_for_pause
from dispatcher.domain.errors import DomainError, Forbidden, InvalidValue, UnknownTask
from dispatcher.domain.events import (
    CONSULT_ANSWERED,
    CONSULT_SENT,
    EMAIL_REDIRECTED,
    REMINDER_DUE,
    REMINDER_SET,
    REMINDER_SUPERSEDED,
    TASK_NOTE,
)
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel, Task, TaskState

from .assignment import Assignment
from .compose import one_line, unguessable_message_id
from .intake import email_identity
from .mail import OUTBOX_EMAIL, InboundMail, Mail, Received, html_to_text, new_message_id
from .ports import (
    Changes,
    CollaborationStore,
    Consult,
    MailMessage,
    OutboxItem,
    Reminder,
    Store,
    TaskNote,
)

log = logging.getLogger(__name__)

# Dispositions of tasks that leave the agent through collaboration.
REDIRECTED = "redirected"
REMINDER = "reminder"
CONSULTED = "consulted"  # the action of a Received for an expert's answer
# Message kinds.
KIND_CONSULT, KIND_REDIRECT = "consult", "redirect"

MAX_NOTE_CHARS = 4000
MAX_CONSULT_CHARS = 20_000
MAX_REMINDER_SECONDS = 90 * 86_400.0
QUOTED_CHARS = 4000
MAX_ADDRESS_CHARS = 254
TOKEN_RE = re.compile(r"\[consult ([0-9a-f]{32})\]")
HELD = (TaskState.ASSIGNED, TaskState.WRAP_UP)




_ADDRESS = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+$")


def outside_address(value: str) -> str:
    """A bare e-mail address (lower-cased), or InvalidValue: no display name, no list, no
    line break, so nothing can ride along into a header."""
    value = (value or "").strip()
    if len(value) > MAX_ADDRESS_CHARS or not _ADDRESS.match(value):
        raise InvalidValue(f"not an e-mail address: {value[:80]!r}")
    return email_identity(value).value


def _new_token() -> str:
    return uuid.uuid4().hex


class Collaboration:
    def __init__(
        self,
        assignment: Assignment,
        store: Store,
        collab: CollaborationStore,
        clock: IReactorTime,
        intake: Any,
        sessions: Any,
        mail: Mail,
        new_token: Callable[[], str] = _new_token,
    ) -> None:
        self.assignment = assignment
        self.router = assignment.router
        self.store = store
        self.collab = collab
        self.clock = clock
        self.intake = intake
        self.sessions = sessions
        self.mail = mail
        self.new_token = new_token
        self._timers: dict[str, Any] = {}
        self._firing: set[Deferred[None]] = set()  # reminders being brought back now

    def now(self) -> float:
        return self.clock.seconds()

    def _held(self, task_id: str, agent_id: str | None) -> Task:
        """The open task; with `agent_id`, only if that agent holds it."""
        task = self.router.tasks.get(task_id)
        if task is None:
            raise UnknownTask(task_id)
        if agent_id is not None and (task.agent_id != agent_id or task.state not in HELD):
            raise Forbidden(agent_id, f"task {task_id}")
        return task

    # ------------------------------------------------------------------ notes

    def note(self, task_id: str, text: str, actor: str, agent_id: str | None = None
             ) -> Deferred[TaskNote]:
        """Add an internal note (agents: on a task they hold)."""
        return ensureDeferred(self._note(task_id, text, actor, agent_id))

    async def _note(self, task_id: str, text: str, actor: str,
                    agent_id: str | None) -> TaskNote:
        text = (text or "").strip()
        if not text or len(text) > MAX_NOTE_CHARS:
            raise InvalidValue(f"a note has 1-{MAX_NOTE_CHARS} characters")
        if agent_id is not None or task_id in self.router.tasks:
            self._held(task_id, agent_id)
        elif await self.store.get_task(task_id) is None:
            raise UnknownTask(task_id)
        now = self.now()
        note = TaskNote(task_id, actor, text, now)
        event = ev.Event(TASK_NOTE, now, task_id, agent_id, actor, {"text": text})
        note_id = await self.collab.add_note(note, Changes(events=[event]))
        return replace(note, id=note_id)

    def notes(self, task_id: str, agent_id: str | None) -> Deferred[list[TaskNote]]:
        """The task's internal notes, for the agent it is with (`agent_id`), or for a
        supervisor (`agent_id` None: any task); `Forbidden` for anyone else."""
        try:
            self._readable(task_id, agent_id)
        except DomainError as exc:
            return fail(exc)
        return self.collab.notes(task_id)

    def consults(self, task_id: str, agent_id: str | None) -> Deferred[list[Consult]]:
        """The task's expert consults, for the same readers as `notes`."""
        try:
            self._readable(task_id, agent_id)
        except DomainError as exc:
            return fail(exc)
        return self.collab.consults(task_id)

    def _readable(self, task_id: str, agent_id: str | None) -> None:
        """Notes and consults are read by a supervisor (`agent_id` None), or by the agent the
        open task is with."""
        if agent_id is None:
            return
        task = self.router.tasks.get(task_id)
        if task is None or task.agent_id != agent_id:
            raise Forbidden(agent_id, f"task {task_id}")

    # ------------------------------------------------------------------ transfer with a note

    def transfer(self, task_id: str, agent_id: str, note: str = "", to_queue: str | None = None,
                 to_agent: str | None = None) -> Deferred[Outcome]:
        return ensureDeferred(self._transfer(task_id, agent_id, note, to_queue, to_agent))

    async def _transfer(self, task_id: str, agent_id: str, note: str, to_queue: str | None,
                        to_agent: str | None) -> Outcome:
        self._held(task_id, agent_id)
        if note and len(note) > MAX_NOTE_CHARS:
            raise InvalidValue(f"a note has at most {MAX_NOTE_CHARS} characters")
        actor = ev.agent_actor(agent_id)
        outcome = await self.sessions.transfer(task_id, queue=to_queue, agent_id=to_agent,
                                               actor=actor)
        if note.strip():
            target = f"queue {to_queue}" if to_queue else f"agent {to_agent}"
            now = self.now()
            event = ev.Event(TASK_NOTE, now, task_id, agent_id, actor,
                             {"text": note.strip(), "transfer": target})
            await self.collab.add_note(TaskNote(task_id, actor, note.strip(), now),
                                       Changes(events=[event]))
        return outcome

    # ------------------------------------------------------------------ outbound mail

    def _outbound(self, task_id: str, kind: str, to: str, subject: str, text: str,
                  attach: bytes | None = None) -> tuple[MailMessage, OutboxItem]:
        p = self.mail.policy
        em = EmailMessage(policy=email_policy.SMTP)
        em["From"] = formataddr((one_line(p.from_name), one_line(p.from_address)))
        em["To"] = one_line(to)
        em["Subject"] = one_line(subject)
        em["Date"] = format_datetime(datetime.fromtimestamp(self.now(), UTC))
        message_id = unguessable_message_id(p.message_id_domain)
        em["Message-ID"] = message_id
        em.set_content(text)
        if attach is not None:
            try:
                original = message_from_bytes(attach, policy=email_policy.default)
                em.add_attachment(original)
            except Exception:  # noqa: BLE001 - a malformed original still goes, as bytes
                em.add_attachment(attach, maintype="application", subtype="octet-stream",
                                  filename="original.eml")
        now = self.now()
        msg = MailMessage(
            id=new_message_id(now), task_id=task_id, direction="out", kind=kind,
            created_at=now, raw=em.as_bytes(), message_id=message_id.strip("<>"),
            peer=to.lower(), from_addr=p.from_address, to_addrs=(to,),
            subject=one_line(subject), text=text, status="queued")
        item = OutboxItem(OUTBOX_EMAIL, task_id,
                          {"message": msg.id, "mail_from": p.from_address, "rcpt": [to]}, now)
        return msg, item

    async def _first_inbound(self, task_id: str) -> MailMessage | None:
        messages = await self.store.mail_messages(task_id)
        return next((m for m in messages if m.direction == "in" and m.kind == "customer"), None)

    def _request(self, task: Task) -> str:
        number = task.attributes.get("request_number")
        return self.mail.policy.label(int(number)) if number is not None else ""

    # ------------------------------------------------------------------ consults

    def consult(self, task_id: str, agent_id: str, expert: str, question: str
                ) -> Deferred[Consult]:
        """Ask an outside expert about a task the agent holds; the answer comes back into it."""
        return ensureDeferred(self._consult(task_id, agent_id, expert, question))

    async def _consult(self, task_id: str, agent_id: str, expert: str,
                       question: str) -> Consult:
        task = self._held(task_id, agent_id)
        if task.channel is not Channel.EMAIL:
            raise InvalidValue("consults are for e-mail tasks")
        address = outside_address(expert)
        question = (question or "").strip()
        if not question or len(question) > MAX_CONSULT_CHARS:
            raise InvalidValue(f"a question has 1-{MAX_CONSULT_CHARS} characters")
        token = self.new_token()
        request = self._request(task)
        original = await self._first_inbound(task_id)
        quoted = ""
        if original is not None:
            body = (original.text or html_to_text(original.html))[:QUOTED_CHARS]
            quoted = "\n\n---- The customer wrote ----\n" + "\n".join(
                "> " + line for line in body.splitlines())
        subject = (f"Question about {one_line(task.attributes.get('subject'))[:120]} "
                   f"[#{request}] [consult {token}]")
        text = (f"{question}\n\nPlease reply to this message and keep the subject as it is."
                f"{quoted}\n")
        msg, item = self._outbound(task_id, KIND_CONSULT, address, subject, text)
        now = self.now()
        consult = Consult(token, task_id, agent_id, address, msg.message_id, now)
        event = ev.Event(CONSULT_SENT, now, task_id, agent_id, ev.agent_actor(agent_id),
                         {"token": token, "expert": address, "message": msg.id})
        await self.collab.add_consult(consult, [msg], Changes(events=[event], outbox=[item]))
        return consult

    async def intercept(self, mail: InboundMail) -> Received | None:
        """For `Mail` (wired with `Mail.intercept_with`): take an expert's answer to a
        consult into its task."""
        found = TOKEN_RE.search(mail.subject or "")
        ids = [i for i in ((mail.in_reply_to,) + tuple(mail.references)) if i]
        if found is None and not ids:
            return None
        consult = await self.collab.find_consult(found.group(1) if found else None, ids)
        if consult is None:
            return None
        sender = (mail.from_address or mail.envelope_from or "").strip().lower()
        if sender != consult.expert:
            log.warning("consult %s: answer from %s, not the expert; handled as a mail",
                        consult.token, sender)
            return None
        now = self.now()
        msg = MailMessage(
            id=new_message_id(now), task_id=consult.task_id, direction="in", kind=KIND_CONSULT,
            created_at=now, raw=mail.raw, message_id=mail.message_id,
            in_reply_to=mail.in_reply_to, references=tuple(mail.references), peer=None,
            from_addr=mail.from_address, to_addrs=tuple(mail.to_addrs), subject=mail.subject,
            text=mail.text, html=mail.html, defects=tuple(mail.defects),
            malformed=mail.malformed, source=mail.source, attachments=tuple(mail.attachments))
        event = ev.Event(CONSULT_ANSWERED, now, consult.task_id, consult.agent_id,
                         f"email:{sender}",
                         {"token": consult.token, "expert": sender, "message": msg.id})
        await self.collab.answer_consult(consult.token, now, [msg], Changes(events=[event]))
        task = self.router.tasks.get(consult.task_id) or await self.store.find_mail_task(
            task_id=consult.task_id)
        request = self._request(task) if task is not None else ""
        return Received(consult.task_id, request, CONSULTED,
                        task.customer_id if task is not None else None)

    # ------------------------------------------------------------------ redirect

    def redirect(self, task_id: str, agent_id: str, to: str, note: str = ""
                 ) -> Deferred[MailMessage]:
        """Forward a misdirected mail to an outside address and close the task."""
        return ensureDeferred(self._redirect(task_id, agent_id, to, note))

    async def _redirect(self, task_id: str, agent_id: str, to: str, note: str) -> MailMessage:
        task = self._held(task_id, agent_id)
        if task.channel is not Channel.EMAIL:
            raise InvalidValue("only e-mail tasks can be redirected")
        address = outside_address(to)
        note = (note or "").strip()
        if len(note) > MAX_NOTE_CHARS:
            raise InvalidValue(f"a note has at most {MAX_NOTE_CHARS} characters")
        original = await self._first_inbound(task_id)
        if original is None:
            raise InvalidValue(f"task {task_id} has no message to redirect")
        subject = f"Fwd: {one_line(original.subject)}"
        text = ((note + "\n\n") if note else "") + (
            "This message reached us by mistake; it is attached as we received it.\n")
        msg, item = self._outbound(task_id, KIND_REDIRECT, address, subject, text,
                                   attach=original.raw)
        actor = ev.agent_actor(agent_id)
        event = ev.Event(EMAIL_REDIRECTED, self.now(), task_id, agent_id, actor,
                         {"to": address, "message": msg.id, "note": note})
        await self.store.add_mail([msg], Changes(events=[event], outbox=[item]))
        await self.sessions.complete(agent_id, task_id, REDIRECTED, note, coded=False)
        return msg

    # ------------------------------------------------------------------ reminders

    def remind(self, task_id: str, agent_id: str, due_at: float, note: str = ""
               ) -> Deferred[Reminder]:
        """Set the task aside until `due_at`: it leaves the agent now and comes back then."""
        return ensureDeferred(self._remind(task_id, agent_id, due_at, note))

    async def _remind(self, task_id: str, agent_id: str, due_at: float,
                      note: str) -> Reminder:
        self._held(task_id, agent_id)
        now = self.now()
        try:
            due_at = float(due_at)
        except (TypeError, ValueError):
            raise InvalidValue("due_at is a time in seconds since the epoch") from None
        if not now < due_at <= now + MAX_REMINDER_SECONDS:
            raise InvalidValue("a reminder is due in the future, within 90 days")
        note = (note or "").strip()
        if len(note) > MAX_NOTE_CHARS:
            raise InvalidValue(f"a note has at most {MAX_NOTE_CHARS} characters")
        reminder = Reminder(uuid.uuid4().hex, task_id, agent_id, due_at, now, note)
        event = ev.Event(REMINDER_SET, now, task_id, agent_id, ev.agent_actor(agent_id),
                         {"reminder": reminder.id, "due_at": due_at, "note": note})
        await self.collab.add_reminder(reminder, Changes(events=[event]))
        self._arm(reminder)
        await self.sessions.complete(agent_id, task_id, REMINDER, note, coded=False)
        return reminder

    def start(self) -> Deferred[None]:
        """Re-arm the stored pending reminders (after a restart); overdue ones fire now."""
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        for reminder in await self.collab.pending_reminders():
            self._arm(reminder)

    def stop(self) -> None:
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _arm(self, reminder: Reminder) -> None:
        old = self._timers.pop(reminder.task_id, None)
        if old is not None and old.active():
            old.cancel()
        delay = max(0.0, reminder.due_at - self.now())
        self._timers[reminder.task_id] = self.clock.callLater(delay, self._fire, reminder)

    def _fire(self, reminder: Reminder) -> None:
        self._timers.pop(reminder.task_id, None)
        d = ensureDeferred(self._due(reminder))
        d.addErrback(lambda f: log.error("reminder %s of task %s failed: %s", reminder.id,
                                         reminder.task_id, f.getTraceback()))
        self._firing.add(d)
        d.addBoth(lambda _: self._firing.discard(d))

    def settled(self) -> Deferred[Any]:
        """Fires when the reminders firing now are done (for an orderly stop, and tests)."""
        return DeferredList(list(self._firing))

    async def _due(self, reminder: Reminder) -> None:
        now = self.now()
        task = None if reminder.task_id in self.router.tasks else (
            await self.store.find_mail_task(task_id=reminder.task_id))
        if task is None or task.state is not TaskState.COMPLETED:
            reason = "task open again" if reminder.task_id in self.router.tasks else (
                "task gone" if task is None else f"task {task.state.value}")
            event = ev.Event(REMINDER_SUPERSEDED, now, reminder.task_id,
                             data={"reminder": reminder.id, "reason": reason})
            await self.collab.settle_reminder(reminder.id, "superseded",
                                              Changes(events=[event]))
            return
        deadline = task.deadline
        if deadline is not None:
            queue = self.router.queues.get(task.queue)
            calendar = self.intake.calendars.get((queue.calendar if queue else None) or "",
                                                 ALWAYS_OPEN)
            deadline = extend_for_pause(deadline, reminder.created_at, now, calendar)
        attributes = dict(task.attributes)
        attributes["preferred_agent"] = reminder.agent_id
        attributes["preferred_until"] = now + self.mail.policy.sticky_seconds
        attributes["reminder"] = {"id": reminder.id, "note": reminder.note}
        back = replace(task, state=TaskState.QUEUED, agent_id=None, offer_id=None,
                       offer_expires_at=None, step=0, step_started_at=now, updated_at=now,
                       deadline=deadline, attributes=attributes,
                       required_skills=dict(task.base_skills))
        event = ev.Event(REMINDER_DUE, now, task.id, reminder.agent_id,
                         data={"reminder": reminder.id, "deadline": deadline,
                               "paused_seconds": now - reminder.created_at,
                               "note": reminder.note})
        await self.collab.settle_reminder(reminder.id, "done",
                                          Changes(tasks=[back], events=[event]))
        try:
            outcome = self.router.submit(back, now)
        except Exception:
            log.exception("could not route task %s back from its reminder", task.id)
            return
        await self.assignment.apply(outcome)
