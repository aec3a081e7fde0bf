"""SIP ↔ the dispatcher's words: who is calling, what the task records of a call, and the
messages the proxy derives from others (a forwarded request with our Via and Record-Route, a
response with our Via taken off, the CANCEL, ACK and BYE of an agent leg).

Sits in the phone edge between control.py and parse.py; pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

from .parse import ParseError, Request, Response, parse_address, split_list, unescape

DEFAULT_MAX_FORWARDS = 70
MAX_ATTRIBUTE_CHARS = 200


def caller_of(request: Request) -> str:
    """The caller's number (or name) from From: the user part of a SIP URI, the number of a
    tel: URI, else the display name; "anonymous" when there is nothing."""
    try:
        frm = request.from_
    except ParseError:
        return "anonymous"
    uri = frm.uri
    if uri.is_sip and uri.user:
        return unescape(uri.user).split(";")[0][:MAX_ATTRIBUTE_CHARS]
    if uri.scheme == "tel":
        return uri.text[4:].split(";")[0][:MAX_ATTRIBUTE_CHARS]
    return (frm.display or "anonymous")[:MAX_ATTRIBUTE_CHARS]


def call_attributes(request: Request) -> dict[str, Any]:
    """What the task keeps of the INVITE (shown to the agent with the offer)."""
    attrs: dict[str, Any] = {"to": request.uri[:MAX_ATTRIBUTE_CHARS]}
    try:
        frm = request.from_
        attrs["from"] = frm.uri.text[:MAX_ATTRIBUTE_CHARS]
        if frm.display:
            attrs["caller_name"] = frm.display[:MAX_ATTRIBUTE_CHARS]
    except ParseError:
        pass
    subject = request.get("subject")
    if subject:
        attrs["subject"] = subject[:MAX_ATTRIBUTE_CHARS]
    return attrs


def max_forwards(request: Request) -> int:
    value = request.get("max-forwards")
    return DEFAULT_MAX_FORWARDS if value is None else int(value)


def forwarded(request: Request, via: str, *, uri: str | None = None,
              record_route: list[str] = (), drop_routes: int = 0) -> Request:
    """A copy of `request` to send on (§16.6): Request-URI replaced if given, the first
    `drop_routes` Route values (ours) removed, Max-Forwards decremented, `record_route` added on
    top (last one topmost), our Via on top."""
    headers = list(request.headers)
    if drop_routes:
        routes = request.values("route")[drop_routes:]
        headers = [h for h in headers if h[0] != "route"]
        if routes:
            at = next((i for i, h in enumerate(request.headers) if h[0] == "route"), len(headers))
            headers.insert(min(at, len(headers)), ("route", "Route", ", ".join(routes)))
    out = Request(headers, request.body, request.method, uri or request.uri)
    out.set("Max-Forwards", str(max(0, max_forwards(request) - 1)))
    for rr in record_route:
        out.add("Record-Route", rr, first=True)
    out.add("Via", via, first=True)
    return out


def without_top_via(response: Response) -> Response:
    """The response to pass upstream: our Via (the first value) removed (§16.7 step 3)."""
    headers = list(response.headers)
    for i, (k, name, v) in enumerate(headers):
        if k == "via":
            rest = split_list(v)[1:]
            if rest:
                headers[i] = (k, name, ", ".join(rest))
            else:
                del headers[i]
            break
    return Response(headers, response.body, response.status, response.reason)


def count_our_routes(request: Request, is_us) -> int:
    """How many Route values at the top name this server (loose routing, §16.4)."""
    n = 0
    for value in request.values("route"):
        try:
            uri = parse_address(value).uri
        except ParseError:
            break
        if not (uri.is_sip and is_us(uri.host, uri.port)):
            break
        n += 1
    return n


def cancel_for(invite: Request) -> Request:
    """§9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE."""
    headers = [("via", "Via", split_list(invite.get("via") or "")[0])]
    for k, name, v in invite.headers:
        if k in ("from", "to", "call-id", "route", "max-forwards"):
            headers.append((k, name, v))
    headers.append(("cseq", "CSeq", f"{invite.cseq.number} CANCEL"))
    return Request(headers, b"", "CANCEL", invite.uri)


def in_dialog(invite: Request, ok: Response, method: str, via: str, cseq: int) -> Request:
    """A request of ours inside the dialog an agent leg's 2xx set up (to ACK or BYE a leg the
    caller will never get): to the phone's Contact, From as we sent it, To with the phone's
    tag."""
    try:
        contacts = ok.contacts()
        target = contacts[0].uri.text if contacts else invite.uri
    except ParseError:
        target = invite.uri
    headers = [("via", "Via", via), ("max-forwards", "Max-Forwards", str(DEFAULT_MAX_FORWARDS))]
    for k, name, v in invite.headers:
        if k in ("from", "call-id"):
            headers.append((k, name, v))
    headers.append(("to", "To", ok.get("to") or ""))
    headers.append(("cseq", "CSeq", f"{cseq} {method}"))
    return Request(headers, b"", method, target)
