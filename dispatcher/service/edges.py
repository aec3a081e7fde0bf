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

from .accounts import Accounts
from .answers import Library
from .assignment import Assignment
from .backoffice import BackOffice
from .calls import Calls
from .codification import Codification
from .collaboration import Collaboration
from .configuration import Configuration
from .conversation import Conversation
from .health import Readiness
from .held import Held
from .history import History
from .intake import Intake
from .mail import Mail
from .nodes import Nodes
from .ports import EdgeReactor
from .queries import Queries
from .records import Records
from .reports import Reports
from .review import AnswerServices
from .revocation import TokenRevocation
from .sessions import Sessions
from .supervision import Balancing, Supervision
from .tasks import Tasks
from .tokens import Verifier
from .webhooks import Webhooks


class Edge(Protocol):
    """Built by an EdgeSpec. It may also have `endpoints() -> dict[str, int]`, read once it
    started: the kind (`console`, `cti`, `sip`, `sip_tcp`) and port of each endpoint it
    serves, which the node publishes (service/nodes.py) so that the other nodes pass their
    clients on to it."""

    def start(self) -> Any: ...
    def stop(self) -> Any: ...


@dataclass(frozen=True)
class EdgeContext:
    """What an edge may use: the reactor, the service objects, and the HTTP site root to hang
    its pages and APIs on. No store, no router internals: edges go through the services.

    Every field is typed and read directly (`context.mail`), never looked up by name; an edge's
    `build` hands its inner objects the services they use as constructor arguments. The runtime
    (dispatcher/runtime/app.py `build_edges`) fills every field. A field that defaults to None
    is one a process may run an edge without (an edge's own test server builds the context with
    only the services it exercises): its comment says what the edge then leaves out."""

    reactor: EdgeReactor
    intake: Intake
    sessions: Sessions
    queries: Queries
    # Configuration changes: agents, queues, calendars, phones, categories, each rule checked
    # once, audited, applied live (the API's configuration routes, supervisors' balancing).
    configuration: Configuration
    assignment: Assignment
    site_root: Resource  # the runtime's HTTP site: edges hang their pages and APIs here
    # The e-mail channel's use cases. None: no e-mail service (the e-mail edge refuses to
    # build; the console offers no replies, uploads or mail news).
    mail: Mail | None = None
    # The customer history. None: the console shows no history or customers, the API 503s.
    history: History | None = None
    # A task's thread, notes and files. None: the console shows no conversation.
    conversation: Conversation | None = None
    # The phone channel's use cases. None: the phone edge and its CTI refuse to build.
    calls: Calls | None = None
    # Reports from the event log. None: the API's report routes answer 503.
    reports: Reports | None = None
    # Categories and spam: the e-mail edge registers its spam scorer there; the console
    # corrects categories and releases spam. None: neither.
    codification: Codification | None = None
    # Notes, consults, reminders, redirects. None: the console offers none of them.
    collaboration: Collaboration | None = None
    # The answer library, knowledge base and quality review (`library`, `review`): the
    # console's reply box, the API's /answers, the public /help page. None: none of these.
    answers: AnswerServices | None = None
    # Supervisors' live state and balancing actions, for the console and its wallboard.
    # None: the console has no live feed / no balancing actions.
    supervision: Supervision | None = None
    balancing: Balancing | None = None
    # The supervisors' back office: the library, the review queue, parked spam and customers,
    # each use case for supervisors only. None: the supervisor page and API routes lack them.
    backoffice: BackOffice | None = None
    # Console accounts: sign-in, and the rule for a token's holder. None: no accounts here
    # (no sign-in page; supervisor tokens are then refused).
    accounts: Accounts | None = None
    # The HS256 token secret kept in the database (dispatcher.service.tokens.stored_secret),
    # for edges whose settings name no secret file. None: no database secret (the settings'
    # key files only).
    token_secret: bytes | None = None
    # Tasks for any caller but the console: the REST API. None: its task routes answer 503.
    tasks: Tasks | None = None
    # Webhook subscriptions and their deliveries: the API's /webhooks routes. None: 503.
    webhooks: Webhooks | None = None
    # Readiness (the router's size, a database round trip): the admin edge's /healthz.
    # None: /healthz says only that the process answers.
    health: Readiness | None = None
    # Verifies people's tokens (agent, supervisor) with the console's keys, made at the first
    # call (raises tokens.KeyProblem when they cannot be used): the admin edge's /report.
    # None: /report is not served.
    people_tokens: Callable[[], Verifier] | None = None
    # Mail that nodes which do not route accepted and held (held.py): the router's e-mail
    # edge takes it in. None: nothing is held on this database (the e-mail edge takes none in).
    held: Held | None = None


@dataclass(frozen=True)
class StandbyContext:
    """What an edge gets on a node that does not route (a standby waiting for the lease, or an
    edge node): the reactor, the held-mail service and the cluster's nodes (where the leader's
    endpoints are: `nodes.leader(kind)`), nothing that needs the router. The runtime
    (dispatcher/runtime/serve.py) builds it; `EdgeSpec.standby` uses it."""

    reactor: EdgeReactor
    held: Held
    nodes: Nodes


@dataclass(frozen=True)
class EdgeCommandContext:
    """What an edge's command gets: the database is open (the schema checked) while it runs,
    and the services over it. The command line's process runs no router: a change reaches a
    running server through its watches (configuration, revocations) within seconds. Built in
    one place, the composition root (dispatcher/runtime/app.py `CommandServices`).

    `token_secret` is loaded (and made on first use) only for commands that need it: a command
    whose parser sets the default `needs_token_secret=False` gets None."""

    reactor: EdgeReactor
    accounts: Accounts
    token_secret: bytes | None  # the HS256 secret kept in the database (made on first use)
    # Agents, queues, calendars, phones, categories: the rules, the audit (actor `operator`).
    configuration: Configuration | None = None
    # The answer library and knowledge base, not loaded yet (`load(index=False)` first).
    library: Library | None = None
    # Tasks with their trail, review figures, training examples, phone registrations.
    records: Records | None = None
    # Revoking console and CTI tokens.
    revocations: TokenRevocation | None = None
    # Reports from the event log, read on their own connection.
    reports: Reports | None = None


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
    # Optional: what the edge runs on a node that does not route (`standby(context, settings)`
    # -> Edge, or None for nothing to run; built only if enabled): e.g. the e-mail edge's SMTP
    # holding mail for the router, the console's WebSocket passing agents on to the router's
    # node (dispatcher/tunnel.py), the phone edge's SIP redirects.
    # None: the edge runs only on the router's node.
    standby: Callable[[StandbyContext, Any], Edge] | None = None
