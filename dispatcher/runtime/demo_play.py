"""The people of `switchboard demo`: customers who write and call, and robot agents who work.

Sits in the runtime beside demo.py (which seeds the database and starts the dispatcher) and
drives the running dispatcher only through its real paths:
- customers (a pool of returning people, in French and English, demo_data/customers.jsonl)
  send e-mails over SMTP to the demo's own intake (with bodies, senders, sometimes an
  attachment, sometimes a follow-up on their last message), and phone in through intake;
- robot agents accept their offers after a moment, handle the task, answer e-mails through
  the reply box's path (`Review.reply`: a suggested library answer, else a few words of their
  own) and complete; calls end in wrap-up. A robot left `not_responding` comes back, and at
  start the robots carry on with what they held when the demo last stopped.
What it promises: nothing here decides for the dispatcher; the play only does what a customer
or an agent could do, so what the demo shows is what the dispatcher does.
"""

from __future__ import annotations

import json
import logging
import random
import zlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from importlib import resources
from typing import Any

from dispatcher.domain.agents import Presence
from dispatcher.domain.errors import DomainError
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel, TaskState
from dispatcher.service.intake import email_identity, phone_identity

log = logging.getLogger(__name__)

ACCEPT_DELAY = (0.5, 2.5)  # robot agents take a moment to accept
HANDLE_SECONDS = {Channel.PHONE: (4.0, 14.0), Channel.EMAIL: (3.0, 10.0)}
RESUME_SECONDS = (1.0, 4.0)  # what a robot held at the last stop: done soon after the start
CALL_SHARE = 0.45  # of arrivals; the others are e-mails
FOLLOW_UP_SHARE = 0.2  # of e-mails: a customer writes again about their last message
ATTACHMENT_SHARE = 0.5  # of the e-mails whose template names an attachment
MIN_SUGGESTION_SCORE = 0.25  # below it a robot writes its own few words
DATA = "demo_data"

FREE_REPLY = {
    "en": "Hello {name},\n\nthank you for your message: we are looking into it and will come "
          "back to you shortly.\n",
    "fr": "Bonjour {name},\n\nmerci pour votre message : nous nous en occupons et revenons "
          "vers vous très vite.\n",
}
FOLLOW_UP = {
    "en": "Hello again,\n\nany news about this? I have not heard back yet.\n\n{name}",
    "fr": "Bonjour,\n\navez-vous du nouveau à ce sujet ? Je n'ai pas encore eu de réponse.\n\n"
          "{name}",
}
SIGN_OFF = {"en": "\n{name}\n", "fr": "\n{name}\n"}


@dataclass(frozen=True)
class Customer:
    name: str
    email: str
    phone: str
    language: str


@dataclass(frozen=True)
class MailTemplate:
    queue: str
    language: str
    subject: str
    text: str
    attachment: tuple[str, str] | None  # (filename, content type)


def data_lines(name: str) -> list[str]:
    """The lines of one of the demo's data files (JSON Lines)."""
    text = resources.files(__package__).joinpath(DATA, name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def customers() -> list[Customer]:
    return [Customer(**json.loads(line)) for line in data_lines("customers.jsonl")]


def mail_templates() -> list[MailTemplate]:
    out = []
    for line in data_lines("mails.jsonl"):
        o = json.loads(line)
        att = o.get("attachment")
        out.append(MailTemplate(o["queue"], o["language"], o["subject"], o["text"],
                                (att["filename"], att["content_type"]) if att else None))
    return out


def attachment_bytes(filename: str, content_type: str) -> bytes:
    """A small file of the named type: a 16x16 PNG, a one-page PDF, or text."""
    if content_type == "image/png":
        width = height = 16
        rows = b"".join(b"\x00" + bytes((200, 120, 60)) * width for _ in range(height))

        def chunk(kind: bytes, body: bytes) -> bytes:
            crc = zlib.crc32(kind + body) & 0xFFFFFFFF
            return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

        header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    if content_type == "application/pdf":
        return (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
                b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
                b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
                b"trailer<</Root 1 0 R>>\n%%EOF\n")
    return f"{filename}\n".encode()


class Play:
    """Customers and robot agents. `robots`: the ids the robots play; `smtp`: (host, port) of
    the demo's SMTP intake, None when the e-mail edge is off (e-mails then come in through
    intake, without a message); `addresses`: queue -> the address customers write to."""

    def __init__(self, app: Any, reactor: Any, rate_per_minute: float, seed: int,
                 robots: tuple[str, ...], smtp: tuple[str, int] | None,
                 addresses: dict[str, str], ours: dict[str, str] | None = None) -> None:
        self.app, self.reactor = app, reactor
        # a customer's Message-ID -> that of our last mail answering it (the demo's relay sink
        # keeps it): a follow-up answers our mail, as a customer's mail client does.
        self.ours = ours if ours is not None else {}
        self.rng = random.Random(seed)
        self.rate = rate_per_minute / 60.0
        self.robots = frozenset(robots)
        self.smtp = smtp
        self.addresses = addresses
        self.people = customers()
        self.by_email = {c.email: c for c in self.people}
        self.templates = mail_templates()
        self.last_mail: dict[str, tuple[str, str]] = {}  # email -> (message id, subject)
        self.done = 0
        self.replied = 0
        self.mails = 0
        self.calls = 0
        app.assignment.listen(self._heard)

    # ------------------------------------------------------------------ start

    def resume(self) -> int:
        """The robots carry on with what they held when the demo last stopped (wrap-ups end
        by their own timers); how many tasks they pick up again."""
        n = 0
        for robot in sorted(self.robots):
            agent = self.app.router.agents.get(robot)
            for task_id in list(agent.held if agent else ()):
                task = self.app.router.tasks[task_id]
                if task.state is TaskState.ASSIGNED:
                    self.reactor.callLater(self.rng.uniform(*RESUME_SECONDS), self._finish,
                                           robot, task_id, task.channel)
                    n += 1
        return n

    def start(self) -> None:
        self.reactor.callLater(self.rng.expovariate(self.rate), self._arrive)

    # ------------------------------------------------------------------ customers

    def _arrive(self) -> None:
        person = self.rng.choice(self.people)
        if self.rng.random() < CALL_SHARE:
            self._call(person)
        else:
            self._write(person)
        self.reactor.callLater(self.rng.expovariate(self.rate), self._arrive)

    def _call(self, person: Customer) -> None:
        queue = self.rng.choice(sorted(self.addresses))
        d = self.app.intake.submit(Channel.PHONE, queue, phone_identity(person.phone),
                                   person.name)
        d.addCallback(lambda _: setattr(self, "calls", self.calls + 1))
        d.addErrback(lambda f: log.warning("demo call failed: %s", f.getErrorMessage()))

    def _write(self, person: Customer) -> None:
        previous = self.last_mail.get(person.email)
        if previous is not None and self.rng.random() < FOLLOW_UP_SHARE:
            template = None
        else:
            mine = [t for t in self.templates if t.language == person.language]
            template = self.rng.choice(mine or self.templates)
        if self.smtp is None:
            queue = template.queue if template else self.rng.choice(sorted(self.addresses))
            subject = template.subject if template else "Follow-up"
            d = self.app.intake.submit(Channel.EMAIL, queue, email_identity(person.email),
                                       person.name, attributes={"subject": subject})
            d.addErrback(lambda f: log.warning("demo e-mail failed: %s", f.getErrorMessage()))
            return
        msg = self._message(person, template, previous)
        from twisted.mail.smtp import sendmail

        host, port = self.smtp
        d = sendmail(host, person.email, [msg["To"]], msg.as_bytes(), port=port,
                     reactor=self.reactor)
        d.addCallback(lambda _: setattr(self, "mails", self.mails + 1))
        d.addErrback(lambda f: log.warning("demo e-mail from %s refused: %s", person.email,
                                           f.getErrorMessage()))

    def _message(self, person: Customer, template: MailTemplate | None,
                 previous: tuple[str, str] | None) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = formataddr((person.name, person.email))
        msg["Date"] = formatdate(self.reactor.seconds(), localtime=True)
        domain = person.email.rpartition("@")[2]
        msg["Message-ID"] = make_msgid(domain=domain)
        if template is None and previous is not None:  # a follow-up on the last message
            message_id, subject = previous
            msg["To"] = self.addresses.get(self._queue_of(subject), next(iter(
                self.addresses.values())))
            msg["Subject"] = f"Re: {subject}"
            # Answer our last mail (an acknowledgement or a reply) when there is one: its
            # Message-ID is what joins the thread; without it the follow-up is a new task linked
            # to the thread (the sender is not authenticated, issue 13).
            answered = self.ours.get(message_id)
            msg["In-Reply-To"] = answered or message_id
            msg["References"] = f"{message_id} {answered}" if answered else message_id
            msg.set_content(FOLLOW_UP.get(person.language, FOLLOW_UP["en"]).format(
                name=person.name.split()[0]))
            return msg
        assert template is not None
        msg["To"] = self.addresses[template.queue]
        msg["Subject"] = template.subject
        sign = SIGN_OFF.get(person.language, SIGN_OFF["en"]).format(name=person.name)
        msg.set_content(template.text + sign)
        if template.attachment and self.rng.random() < ATTACHMENT_SHARE:
            filename, content_type = template.attachment
            maintype, _, subtype = content_type.partition("/")
            msg.add_attachment(attachment_bytes(filename, content_type), maintype=maintype,
                               subtype=subtype, filename=filename)
        self.last_mail[person.email] = (msg["Message-ID"], template.subject)
        return msg

    def _queue_of(self, subject: str) -> str:
        for t in self.templates:
            if t.subject == subject:
                return t.queue
        return next(iter(self.addresses))

    # ------------------------------------------------------------------ robot agents

    def _heard(self, outcome: Outcome) -> None:
        for offer in outcome.offers:
            if offer.agent_id in self.robots:
                self.reactor.callLater(self.rng.uniform(*ACCEPT_DELAY), self._accept, offer)

    def _accept(self, offer: Any) -> None:
        d = self.app.sessions.accept(offer.agent_id, offer.id)
        handle = self.rng.uniform(*HANDLE_SECONDS[offer.channel])
        d.addCallback(lambda _: self.reactor.callLater(
            handle, self._finish, offer.agent_id, offer.task_id, offer.channel))
        d.addErrback(lambda f: None)  # expired or withdrawn meanwhile: the router moved on

    def _finish(self, agent_id: str, task_id: str, channel: Channel) -> None:
        if channel is Channel.PHONE:
            d = self.app.sessions.wrap_up(agent_id, task_id)  # ends by its timer
            d.addCallback(lambda _: setattr(self, "done", self.done + 1))
            d.addErrback(lambda f: None)  # taken back meanwhile (a supervisor, a transfer)
            return
        from twisted.internet.defer import ensureDeferred

        ensureDeferred(self._answer(agent_id, task_id)).addErrback(
            lambda f: log.warning("robot %s could not finish %s: %s", agent_id, task_id,
                                  f.getErrorMessage()))

    async def _answer(self, agent_id: str, task_id: str) -> None:
        """Reply as an agent would from the reply box, then complete."""
        task = self.app.router.tasks.get(task_id)
        if task is None or task.agent_id != agent_id:
            return
        if task.attributes.get("request"):  # came in as a message: there is someone to answer
            try:
                await self._reply(agent_id, task)
                self.replied += 1
            except DomainError as exc:
                log.info("robot %s did not reply to %s: %s", agent_id, task_id, exc)
        await self.app.sessions.complete(agent_id, task_id, "answered")
        self.done += 1

    async def _reply(self, agent_id: str, task: Any) -> None:
        found = await self.app.review.suggest(task.id, agent_id, 1)
        best = found[0] if found else None
        if best is not None and best.score >= MIN_SUGGESTION_SCORE and not best.missing:
            await self.app.review.reply(agent_id, task.id, best.text, answer_id=best.answer_id)
            return
        person = self.by_email.get(str(task.attributes.get("from") or "").lower())
        language = person.language if person else "en"
        name = person.name.split()[0] if person else ""
        text = FREE_REPLY.get(language, FREE_REPLY["en"]).format(name=name).replace(" ,", ",")
        await self.app.review.reply(agent_id, task.id, text)

    def revive(self) -> None:
        """A robot left `not_responding` (an offer it missed) comes back at once."""
        for robot in sorted(self.robots):
            agent = self.app.router.agents.get(robot)
            if agent is not None and agent.status is Presence.NOT_RESPONDING:
                self.app.sessions.set_status(robot, Presence.AVAILABLE).addErrback(
                    lambda f: None)
