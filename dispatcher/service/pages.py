"""The headers every page the product serves over HTTP carries (the console, the wallboard, the
supervisor pages, /help, the contact form, /report, /login): one function, `harden`, so that
they cannot drift apart.

Sits in `dispatcher.service` so that every edge and the runtime's own pages use it without
importing each other; it only sets headers on a twisted.web request it is handed (no I/O of
its own). What it promises:
- a Content-Security-Policy that always ends with `frame-ancestors 'none'` (no page can be
  framed: no clickjacking), `base-uri 'none'`, and `default-src 'none'` unless the page says
  otherwise; the policy is made of constants and configured numbers only — never of a request
  header (`Host`, `Origin`...), so no client can write into it (`policy` refuses a source
  with a quote, a semicolon, a comma or a control character);
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (a URL never leaves in a
  Referer), `Cache-Control: no-store` unless the page asks for caching.
"""

from __future__ import annotations

import re
from typing import Any

NOSNIFF = b"nosniff"
NO_REFERRER = b"no-referrer"
NO_STORE = b"no-store"
# The end of every policy.
LOCKED = "base-uri 'none'; frame-ancestors 'none'"
_UNSAFE = re.compile(r"[;,'\"\x00-\x1f\x7f]")


def policy(*directives: str) -> str:
    """A Content-Security-Policy: `directives` (e.g. "script-src 'self'"), then LOCKED.
    ValueError for a directive that sets `frame-ancestors` or `base-uri` itself, or has a
    semicolon or a control character (they come from constants, never from a request)."""
    out = []
    for directive in directives:
        name = directive.split(" ", 1)[0]
        if name in ("frame-ancestors", "base-uri") or ";" in directive or re.search(
                r"[\x00-\x1f\x7f]", directive):
            raise ValueError(f"not a directive a page may set: {directive!r}")
        out.append(directive)
    if not any(d.startswith("default-src ") for d in out):
        out.insert(0, "default-src 'none'")
    return "; ".join([*out, LOCKED])


def source(value: str) -> str:
    """A host source for `policy` from configuration (e.g. `ws://*:8765`); ValueError for
    anything with a quote, a comma, a semicolon or a control character."""
    if not value or _UNSAFE.search(value) or " " in value:
        raise ValueError(f"not a CSP source: {value!r}")
    return value


def harden(request: Any, csp: str, cache: bytes = NO_STORE) -> None:
    """Set the page headers (see the module docstring) on a twisted.web request."""
    request.setHeader(b"content-security-policy", csp.encode("ascii"))
    request.setHeader(b"x-content-type-options", NOSNIFF)
    request.setHeader(b"referrer-policy", NO_REFERRER)
    request.setHeader(b"cache-control", cache)
