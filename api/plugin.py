"""The REST API as an edge of the runtime (entry point `switchboard.edges: api`).

`build(context, settings)` gives an object the runtime starts and stops: on start it loads the
token keys (the same defaults as the console's, so the same tokens work; refusing to start
without usable ones) and mounts `/api` on the runtime's HTTP site, under its HTTP limits (the
resource declares `max_body_bytes`). Nothing listens on a port of its own."""

from __future__ import annotations

import logging

from dispatcher.service import tokens
from dispatcher.service.edges import EdgeContext, EdgeSpec

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


class Api:
    def __init__(self, context: EdgeContext, settings: ApiSettings) -> None:
        self.context = context
        self.settings = settings
        self.resource: ApiResource | None = None

    def start(self) -> None:
        verifier = verifier_for(self.settings, getattr(self.context, "token_secret", None))
        self.resource = ApiResource(
            routes(), Services.of(self.context), verifier,
            getattr(self.context, "accounts", None), render().encode(),
            self.settings.max_body_bytes, clock=self.context.reactor.seconds)
        if self.context.site_root is not None:
            self.context.site_root.putChild(b"api", self.resource)
            log.info("api: serving /api/v1 (OpenAPI at /api/v1/openapi.json)")

    def stop(self) -> None:
        root = self.context.site_root
        if root is not None and getattr(root, "children", {}).get(b"api") is self.resource:
            del root.children[b"api"]
        self.resource = None


def build(context: EdgeContext, settings: ApiSettings) -> Api:
    return Api(context, settings)


EDGE = EdgeSpec(name="api", settings=ApiSettings, build=build)
