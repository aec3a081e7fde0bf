"""SIP messages for the unit tests: small builders that write what a phone would send."""

from __future__ import annotations

CRLF = "\r\n"


def request(method: str, uri: str = "sip:support@127.0.0.1", *, branch: str = "z9hG4bKabc1",
            call_id: str = "call-1@phone", cseq: int = 1, cseq_method: str | None = None,
            from_tag: str = "ft1", to_tag: str | None = None, via_host: str = "127.0.0.1:5071",
            extra: list[str] = (), body: str = "", transport: str = "UDP") -> bytes:
    to = "<sip:support@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    branch_part = f";branch={branch}" if branch else ""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {via_host}{branch_part};rport",
        "Max-Forwards: 70",
        f"From: \"Caller\" <sip:+33155501234@127.0.0.1>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:caller@127.0.0.1:5071>",
        *extra,
        f"Content-Length: {len(body.encode())}",
        "",
        body,
    ]
    return CRLF.join(lines).encode()


def response(status: int, reason: str, *, branch: str, method: str = "INVITE", cseq: int = 1,
             call_id: str = "call-1@phone", to_tag: str | None = "pt1",
             via_host: str = "127.0.0.1:5060", extra: list[str] = ()) -> bytes:
    to = "<sip:agent@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"SIP/2.0 {status} {reason}",
        f"Via: SIP/2.0/UDP {via_host};branch={branch}",
        "From: <sip:+33155501234@127.0.0.1>;tag=ft1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return CRLF.join(lines).encode()
