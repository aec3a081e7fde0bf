"""The REST API as an edge of the runtime (entry point `switchboard.edges: api`).

`build(context, settings)` gives an object the runtime starts and stops: on start it loads the
token keys (the same defaults as the console's, so the same tokens work; refusing to start
without usable ones) and mounts `/api` on the runtime's HTTP site, under its HTTP limits (the
resource declares `max_body_bytes`). Nothing listens on a port of its own."""

from __future__ import annotations

import logging

from twisted.web.resource import Resource

from dispatcher.guard import Budget
from dispatcher.service import tokens
from dispatcher.service.accounts import Accounts
from dispatcher.service.edges import EdgeContext, EdgeSpec
from dispatcher.service.ports import EdgeReactor

from .catalogue import routes
from .config import ApiSettings
from .openapi import render
from .resource import ApiResource
from .services import Services

log = logging.getLogger(__name__)


def verifier_for(settings: ApiSettings, stored: bytes | None) -> tokens.Verifier:
    keys = tokens.load_keys(settings.jwt_algorithm, secret_file=settings.jwt_secret_file,
                            public_key_file=settings.jwt_public_key_file, stored=stored,
                            label="api")
    return tokens.Verifier(keys, settings.issuer, settings.audience, settings.leeway_seconds,
                           max_lifetime=settings.max_token_lifetime_seconds,
                           max_integration_lifetime=settings
                           .max_integration_token_lifetime_seconds)


def budget_for(settings: ApiSettings) -> Budget | None:
    """Each token holder's request budget; None when `rate_limit_per_second` is 0 (off)."""
    if settings.rate_limit_per_second <= 0:
        return None
    return Budget(settings.rate_limit_per_second, max(1, settings.rate_limit_burst))


class Api:
    """The API edge, given what it uses (typed constructor injection; `build` reads it from the
    runtime's context): the services its routes call, the accounts, the clock and the site."""

    def __init__(self, settings: ApiSettings, *, clock: EdgeReactor, site_root: Resource,
                 services: Services, accounts: Accounts | None = None,
                 token_secret: bytes | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.site_root = site_root
        self.services = services
        self.accounts = accounts
        self.token_secret = token_secret  # the database's HS256 secret, when there is one
        self.resource: ApiResource | None = None

    def start(self) -> None:
        verifier = verifier_for(self.settings, self.token_secret)
        self.resource = ApiResource(
            routes(), self.services, verifier, self.accounts, render().encode(),
            self.settings.max_body_bytes, clock=self.clock.seconds,
            budget=budget_for(self.settings))
        self.site_root.putChild(b"api", self.resource)
        log.info("api: serving /api/v1 (OpenAPI at /api/v1/openapi.json)")

    def stop(self) -> None:
        if self.site_root.children.get(b"api") is self.resource:
            del self.site_root.children[b"api"]
        self.resource = None


def build(context: EdgeContext, settings: ApiSettings) -> Api:
    services = Services(
        tasks=context.tasks, backoffice=context.backoffice, history=context.history,
        library=context.answers.library if context.answers is not None else None,
        reports=context.reports, configuration=context.configuration,
        webhooks=context.webhooks,
        callbacks=context.calls.callbacks if context.calls is not None else None)
    return Api(settings, clock=context.reactor, site_root=context.site_root, services=services,
               accounts=context.accounts, token_secret=context.token_secret)


EDGE = EdgeSpec(name="api", settings=ApiSettings, build=build)
