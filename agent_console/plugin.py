"""The agent console as an edge of the runtime (entry point `switchboard.edges: console`).

`build(context, settings)` gives an object the runtime starts and stops: on start it loads the
keys (refusing to start without usable ones), listens to every committed outcome, starts the
WebSocket server and mounts the pages on the runtime's HTTP site. `switchboard token --agent ID
[--role R] [--ttl S]` prints a token signed with the configured key.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from dispatcher.aio import to_deferred
from dispatcher.service.edges import EdgeContext, EdgeSpec

from . import help as help_page
from . import web
from .auth import KeyProblem, load_keys, signer_for, verifier_for
from .config import ROLES, ConsoleSettings
from .server import ConsoleServer
from .session import Desks
from .supervision import LiveFeed

log = logging.getLogger(__name__)


class Console:
    def __init__(self, context: EdgeContext, settings: ConsoleSettings) -> None:
        self.context = context
        self.settings = settings
        self.desks = Desks(
            clock=context.reactor, sessions=context.sessions, roster=context.roster,
            queries=context.queries, history=getattr(context, "history", None),
            grace_seconds=settings.grace_seconds,
            queues_interval=settings.queues_interval_seconds,
            timeline_limit=settings.timeline_limit,
        )
        self.server: ConsoleServer | None = None
        self._listening = False
        mail = getattr(context, "mail", None)
        if mail is not None:  # answers go out through the e-mail service's outbox
            self.set_reply_hook(lambda agent_id, task_id, text: mail.reply(task_id, agent_id,
                                                                            text))
        answers = getattr(context, "answers", None)
        if answers is not None and mail is not None:  # replies through the quality review
            self.desks.answers = answers
            self.set_reply_hook(answers.review.reply)
            answers.review.on_held = self.desks.review_held
        # Notes, consults, reminders, redirects; category corrections and spam release.
        self.desks.collaboration = getattr(context, "collaboration", None)
        self.desks.codification = getattr(context, "codification", None)
        # Supervisors: the live state and the balancing actions (supervision.py).
        supervision = getattr(context, "supervision", None)
        if supervision is not None:
            self.desks.live = LiveFeed(supervision)
        self.desks.balancing = getattr(context, "balancing", None)

    def set_reply_hook(self, on_reply: Any) -> None:
        """Where the console hands an agent's e-mail answer: `on_reply(agent_id, task_id,
        text)` (the e-mail edge registers it; it may return a Deferred or an awaitable)."""
        self.desks.reply_hook = on_reply

    def start(self) -> Any:
        keys = load_keys(self.settings)
        if keys.generated is not None:
            print(f"console: tokens are signed with the generated secret in {keys.generated}"
                  " (set [console] jwt_secret_file to use your own)", file=sys.stderr)
        self.server = ConsoleServer(self.settings, verifier_for(self.settings, keys), self.desks,
                                    self.context.sessions, self.desks.history)
        if not self._listening:
            self.context.assignment.listen(self._outcome)
            self._listening = True
        d = to_deferred(self.server.start())
        d.addCallback(lambda _: web.mount(self.context.site_root, self.settings,
                                          self.server.port))
        answers = getattr(self.context, "answers", None)
        if answers is not None and self.context.site_root is not None:
            d.addCallback(lambda _: help_page.mount(self.context.site_root, answers.library))
        return d

    def _outcome(self, outcome: Any) -> None:
        if self.server is not None:
            self.desks.on_outcome(outcome)

    def stop(self) -> Any:
        server, self.server = self.server, None
        if server is None:
            return None
        return to_deferred(server.stop())


def build(context: EdgeContext, settings: ConsoleSettings) -> Console:
    return Console(context, settings)


def issue_token(args: Any, settings: ConsoleSettings) -> int:
    try:
        keys = load_keys(settings)
        token = signer_for(settings, keys).issue(
            args.agent, args.role, args.ttl or settings.token_ttl_seconds)
    except KeyProblem as exc:
        print(f"switchboard token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("token", help="print a console token (JWT) for an agent")
    p.add_argument("--agent", required=True, help="the agent's (or supervisor's) id: `sub`")
    p.add_argument("--role", choices=ROLES, default="agent")
    p.add_argument("--ttl", type=int, default=0, help="lifetime in seconds (default: settings)")
    p.set_defaults(edge_command=issue_token)


EDGE = EdgeSpec(name="console", settings=ConsoleSettings, build=build, commands=add_commands)
