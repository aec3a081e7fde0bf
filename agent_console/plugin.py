"""The agent console as an edge of the runtime (entry point `switchboard.edges: console`).

`build(context, settings)` gives an object the runtime starts and stops: on start it loads the
keys (refusing to start without usable ones: a key file, or the HS256 secret the runtime keeps
in the database), listens to every committed outcome, starts the WebSocket server and mounts
the pages and the sign-in (`POST /login`, login.py) on the runtime's HTTP site.
On a node that does not route, `build_standby` passes the agents' sockets on to the router's
node (dispatcher/tunnel.py). `switchboard token --agent ID [--role R] [--ttl S]` prints a token
signed with the same key,
for an existing agent or an enabled supervisor account (integration tokens need no account).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from twisted.web.resource import Resource

from dispatcher.aio import to_deferred
from dispatcher.domain.errors import DomainError
from dispatcher.domain.routing import Outcome
from dispatcher.service.accounts import Accounts
from dispatcher.service.assignment import Assignment
from dispatcher.service.backoffice import BackOffice
from dispatcher.service.codification import Codification
from dispatcher.service.collaboration import Collaboration
from dispatcher.service.conversation import Conversation
from dispatcher.service.edges import EdgeCommandContext, EdgeContext, EdgeSpec, StandbyContext
from dispatcher.service.history import History
from dispatcher.service.mail import Mail, MailNews
from dispatcher.service.nodes import CONSOLE
from dispatcher.service.ports import EdgeReactor
from dispatcher.service.queries import Queries
from dispatcher.service.review import AnswerServices, Replies
from dispatcher.service.sessions import Sessions
from dispatcher.service.supervision import Balancing, Supervision
from dispatcher.tunnel import Tunnel

from . import login, web
from .auth import KeyProblem, load_keys, signer_for, verifier_for
from .config import ROLES, ConsoleSettings
from .files import MailFiles, Uploads
from .server import ConsoleServer
from .session import Desks
from .supervision import LiveFeed

log = logging.getLogger(__name__)


class Console:
    """The console edge, given the services it uses (typed constructor injection; `build`
    reads them from the runtime's context). A service given as None is one this process runs
    without: the console then offers none of what it serves (e.g. no replies without `mail`)."""

    def __init__(self, settings: ConsoleSettings, *, clock: EdgeReactor, sessions: Sessions,
                 queries: Queries, assignment: Assignment, site_root: Resource,
                 history: History | None = None, mail: Mail | None = None,
                 answers: AnswerServices | None = None,
                 collaboration: Collaboration | None = None,
                 codification: Codification | None = None,
                 supervision: Supervision | None = None, balancing: Balancing | None = None,
                 backoffice: BackOffice | None = None,
                 conversation: Conversation | None = None, accounts: Accounts | None = None,
                 token_secret: bytes | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.sessions = sessions
        self.assignment = assignment
        self.site_root = site_root
        self.mail = mail
        self.accounts = accounts
        self.token_secret = token_secret  # the database's HS256 secret, when there is one
        self.server: ConsoleServer | None = None
        self._listening = False
        reply_hook = None
        if mail is None:
            answers = None  # the library's answers are replies, and replies go out by mail
        else:  # answers go out through the e-mail service's outbox
            # The service decides the way (through the quality review when it is wired).
            reply_hook = Replies(mail, answers.review if answers else None).send
        self.desks = Desks(
            clock=clock, sessions=sessions, queries=queries, history=history,
            grace_seconds=settings.grace_seconds,
            queues_interval=settings.queues_interval_seconds,
            timeline_limit=settings.timeline_limit,
            reply_hook=reply_hook, answers=answers,
            # Is a relay configured? (the e-mail service's policy, read at each welcome)
            mail_policy=None if mail is None else (lambda: mail.policy),
            # Notes, consults, reminders, redirects; category corrections and spam release.
            collaboration=collaboration, codification=codification,
            # Supervisors: the live state and the balancing actions (supervision.py).
            live=LiveFeed(supervision) if supervision is not None else None,
            balancing=balancing,
            # The supervisor page (/supervisor): library, review, spam, customers.
            backoffice=backoffice,
            # A task's thread, notes and files (conversation.py, files.py).
            conversation=conversation,
        )
        if mail is not None:
            mail.listen(self._mail_news)
        if answers is not None:
            answers.review.listen_held(self.desks.review_held)
            answers.review.listen_decided(self.desks.review_decided)  # the agent is told

    def _mail_news(self, news: MailNews) -> None:
        if self.server is not None:
            self.desks.on_mail(news)

    def set_reply_hook(self, on_reply: Callable[[str, str, str], Any]) -> None:
        """Where the console hands an agent's e-mail answer: `on_reply(agent_id, task_id,
        text)` (an edge started later may register it; it may return a Deferred or an
        awaitable). The console's own, with a mail service, is given to `Desks` at once."""
        self.desks.on_reply(on_reply)

    def start(self) -> Any:
        keys = load_keys(self.settings, self.token_secret)
        if keys.stored:
            log.info("console: tokens are signed with the secret kept in the database"
                     " (set [console] jwt_secret_file to use your own)")
        accounts = self.accounts
        verifier = verifier_for(self.settings, keys)
        self.server = ConsoleServer(self.settings, verifier, self.desks, self.sessions,
                                    self.desks.history, accounts=accounts)
        if accounts is not None:
            if keys.sign is None:
                log.warning("console: no signing key (RS256 without jwt_private_key_file): "
                            "no sign-in with a password, tokens only")
            else:
                login.mount(self.site_root, login.LoginPage(
                    self.settings, accounts, signer_for(self.settings, keys), verifier,
                    self.clock))
        if not self._listening:
            self.assignment.listen(self._outcome)
            self._listening = True
        d = to_deferred(self.server.start())
        d.addCallback(lambda _: web.mount(self.site_root, self.settings,
                                          self.server.port, self._files(verifier)))
        return d

    def endpoints(self) -> dict[str, int]:
        """The console's WebSocket port, published for the other nodes' tunnels."""
        return {CONSOLE: self.server.port} if self.server is not None else {}

    def _files(self, verifier: Any) -> dict[bytes, Any]:
        """`/console/mail` (a conversation's bodies and attachments, by signed link) and
        `/console/upload` (an agent's files for a reply)."""
        children: dict[bytes, Any] = {}
        if self.desks.conversation is not None:
            children[b"mail"] = MailFiles(self.desks.conversation, self.desks.links)
        if self.mail is not None:
            children[b"upload"] = Uploads(self.mail, verifier, self.settings, self.accounts)
        return children

    def _outcome(self, outcome: Outcome) -> None:
        if self.server is not None:
            self.desks.on_outcome(outcome)

    def stop(self) -> Any:
        server, self.server = self.server, None
        if server is None:
            return None
        return to_deferred(server.stop())


def build(context: EdgeContext, settings: ConsoleSettings) -> Console:
    return Console(
        settings, clock=context.reactor, sessions=context.sessions,
        queries=context.queries, assignment=context.assignment, site_root=context.site_root,
        history=context.history, mail=context.mail, answers=context.answers,
        collaboration=context.collaboration, codification=context.codification,
        supervision=context.supervision, balancing=context.balancing,
        backoffice=context.backoffice, conversation=context.conversation,
        accounts=context.accounts, token_secret=context.token_secret)


async def issue_token(args: Any, settings: ConsoleSettings,
                      context: EdgeCommandContext) -> int:
    """`switchboard token`: an agent token for an existing agent, a supervisor token for an
    enabled supervisor account (the accounts' rule, `Accounts.check_issue`), an integration
    token for anyone (a PBX); signed with the key `serve` uses on the same database."""
    try:
        keys = load_keys(settings, context.token_secret)
        signer = signer_for(settings, keys)
        await context.accounts.check_issue(args.agent, args.role)
    except (KeyProblem, DomainError) as exc:
        print(f"switchboard token: {exc}", file=sys.stderr)
        return 2
    print(signer.issue(args.agent, args.role, args.ttl or settings.token_ttl_seconds))
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("token", help="print a console token (JWT) for an agent")
    p.add_argument("--agent", required=True,
                   help="the token's subject `sub`: an agent's id, a supervisor account's id, "
                        "or a PBX's name (role integration)")
    p.add_argument("--role", choices=ROLES, default="agent",
                   help="agent (an existing agent), supervisor (an enabled supervisor "
                        "account) or integration (a PBX; no account)")
    p.add_argument("--ttl", type=int, default=0, help="lifetime in seconds (default: settings)")
    p.set_defaults(edge_command=issue_token)


def build_standby(context: StandbyContext, settings: ConsoleSettings) -> Tunnel:
    """On a node that does not route: the console's WebSocket port passes every agent's socket
    on to the router's node, which judges the handshake (dispatcher/tunnel.py); the pages come
    through the node's HTTP, which passes them on too (dispatcher/runtime/proxy.py)."""
    nodes = context.nodes
    return Tunnel(name="console", host=settings.host, port=settings.port,
                 max_frame_bytes=settings.max_frame_bytes,
                 leader=lambda: nodes.leader(CONSOLE), forget=nodes.forget)


EDGE = EdgeSpec(name="console", settings=ConsoleSettings, build=build, commands=add_commands,
                standby=build_standby)
