"""SIP status codes and reason phrases the phone edge sends (RFC 3261 §21, RFC 3326 causes):
one place, because the codes are what callers' phones and proxies act on."""

from __future__ import annotations

TRYING = 100
RINGING = 180
QUEUED = 182
OK = 200
BAD_REQUEST = 400
UNAUTHORIZED = 401
FORBIDDEN = 403
NOT_FOUND = 404
METHOD_NOT_ALLOWED = 405
REQUEST_TIMEOUT = 408
UNSUPPORTED_MEDIA_TYPE = 415
UNSUPPORTED_URI_SCHEME = 416
BAD_EXTENSION = 420
INTERVAL_TOO_BRIEF = 423
TEMPORARILY_UNAVAILABLE = 480
NO_TRANSACTION = 481
LOOP_DETECTED = 482
BUSY_HERE = 486
REQUEST_TERMINATED = 487
NOT_ACCEPTABLE = 406  # a SUBSCRIBE whose Accept excludes dialog-info
BAD_EVENT = 489  # RFC 6665: an event package we do not serve
MOVED_TEMPORARILY = 302  # a node that does not route sends callers to the leader (redirect.py)
SERVER_ERROR = 500
NOT_IMPLEMENTED = 501
SERVICE_UNAVAILABLE = 503
DECLINE = 603

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 410: "Gone", 413: "Request Entity Too Large",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "Version Not Supported", 600: "Busy Everywhere", 603: "Decline",
}

# What the queue says while the caller waits, and why it gave up.
QUEUED_REASON = "Queued"
QUEUE_TIMEOUT_REASON = "Temporarily Unavailable (no agent in time)"
NO_QUEUE_REASON = "Not Found (no queue at this address)"
STORE_FAILED_REASON = "Service Unavailable (could not store the call)"
RETRY_AFTER_SECONDS = 30
# One 403 for every digest failure (unknown user, wrong password, lockout): no user enumeration.
AUTH_FAILED_REASON = "Forbidden"
# Call-IDs the queue cannot take (the core's limit, dispatcher.service.calls.MAX_CALL_ID; reuse).
CALL_ID_TOO_LONG_REASON = "Bad Request (Call-ID longer than 256 characters)"
CALL_ID_IN_USE_REASON = "Bad Request (Call-ID already in use)"
# INVITEs beyond a source's budget (config invite_rate/invite_burst): 480 + Retry-After, not 503,
# which upstream proxies take as "this whole server is overloaded" (RFC 6357 §4) and fail over.
FLOOD_REASON = "Temporarily Unavailable (too many calls from your address)"

# Reasons given to calls.refused / calls.abandoned / calls.ended (wire API of call events).
REFUSED_BUSY = "busy"  # 486 / 600
REFUSED_DECLINED = "declined"  # 603
REFUSED_UNREACHABLE = "unreachable"  # no binding, transport error, timeout
ABANDONED_CANCEL = "caller_cancel"
ABANDONED_TIMEOUT = "queue_timeout"
ENDED_BY_CALLER = "caller"
ENDED_BY_AGENT = "agent"


def refusal(status: int) -> str:
    """The reason recorded for an agent phone's final non-2xx answer."""
    if status in (486, 600):
        return REFUSED_BUSY
    if status == 603:
        return REFUSED_DECLINED
    if status in (408, 480, 503):
        return REFUSED_UNREACHABLE
    return f"sip_{status}"


def warning_text(reason: str) -> str:
    """A reason made safe for a Warning header's quoted string (printable ASCII, no quotes)."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in reason)[:120]
