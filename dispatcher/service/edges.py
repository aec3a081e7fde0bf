"""The contract between the runtime and an edge (a channel or the agent console).

An edge package exposes an `EdgeSpec` through the entry-point group `switchboard.edges` (in
pyproject.toml); the runtime discovers it (`dispatcher.runtime.edges`), reads its settings with
the same layering and error reporting as the core's (defaults < TOML `[name]` <
`SWITCHBOARD_NAME_KEY`), and builds it only if its settings say `enabled`. `build(context,
settings)` returns an object with `start()` and `stop()` (each may return a Deferred). The edge
gets the service objects and the HTTP site root; never the store or the router's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.web.resource import Resource


class Edge(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> Any: ...


@dataclass(frozen=True)
class EdgeContext:
    """What an edge may use: the reactor, the service objects, and the HTTP site root to hang
    its pages and APIs on. No store, no router internals: edges go through the services."""

    reactor: Any
    intake: Any
    sessions: Any
    queries: Any
    roster: Any
    assignment: Any
    site_root: Resource
    mail: Any = None  # dispatcher.service.mail.Mail, for the e-mail edge
    # The customer history service (dispatcher.service.history.History); None: no history.
    history: Any = None
    # A task's thread, notes and files (dispatcher.service.conversation.Conversation).
    conversation: Any = None
    # The phone channel's use cases (dispatcher.service.calls.Calls), for the phone edges.
    calls: Any = None
    # Reports from the event log (dispatcher.service.reports.Reports) and today's figures kept
    # up to date (reports.Today: the same definitions, docs/metrics.md), for supervisor views.
    reports: Any = None
    today: Any = None
    # Categories and spam (dispatcher.service.codification.Codification): the e-mail edge
    # registers its spam scorer there; the console corrects categories and releases spam.
    codification: Any = None
    # Notes, consults, reminders, redirects (dispatcher.service.collaboration.Collaboration).
    collaboration: Any = None
    # The answer library, knowledge base and quality review (dispatcher.service.review.
    # AnswerServices: `library`, `review`): the console's reply box and /help use it.
    answers: Any = None
    # Supervisors' live state (dispatcher.service.supervision.Supervision) and balancing
    # actions (supervision.Balancing), for the console and its wallboard.
    supervision: Any = None
    balancing: Any = None
    # The supervisors' back office (dispatcher.service.backoffice.BackOffice): the library,
    # the review queue, parked spam and customers, each use case for supervisors only.
    backoffice: Any = None
    # Console accounts (dispatcher.service.accounts.Accounts): sign-in, and the rule for a
    # token's holder; None: no accounts here (supervisor tokens are then refused).
    accounts: Any = None
    # The HS256 token secret kept in the database (dispatcher.service.tokens.stored_secret),
    # for edges whose settings name no secret file; None: no database secret.
    token_secret: bytes | None = None
    # Configuration changes (dispatcher.service.configuration.Configuration): agents, queues,
    # calendars, phones, categories, each rule checked once, audited, applied live.
    configuration: Any = None
    # Tasks for any caller but the console (dispatcher.service.tasks.Tasks): the REST API.
    tasks: Any = None
    # Webhook subscriptions and their deliveries (dispatcher.service.webhooks.Webhooks): the
    # REST API's /webhooks routes.
    webhooks: Any = None


@dataclass(frozen=True)
class EdgeCommandContext:
    """What an edge's command gets: the database is open (the schema checked) while it runs."""

    reactor: Any
    accounts: Any  # dispatcher.service.accounts.Accounts
    token_secret: bytes  # the HS256 secret kept in the database (made on first use)


@dataclass(frozen=True)
class EdgeSpec:
    name: str
    settings: type  # a frozen dataclass with defaults for every field, including `enabled`
    build: Callable[[EdgeContext, Any], Edge]
    # Optional command-line commands: `commands(subparsers)` adds argparse sub-commands, each
    # with `set_defaults(edge_command=fn)`; the CLI then calls `fn(args, settings, context)`
    # (an `EdgeCommandContext`) under the reactor with the database open; it returns the exit
    # code, or an awaitable of it. E.g. the console's `switchboard token`.
    commands: Callable[[Any], None] | None = None
