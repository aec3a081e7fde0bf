"""SMTP replies of the e-mail edge (code, enhanced status and text): one place, because reply
codes are what senders' software acts on (4xx: retry later; 5xx: give up)."""

from __future__ import annotations

from twisted.mail.smtp import SMTPServerError

OK_STORED = (250, b"2.0.0 Stored as {request}")
OK_HELD = (250, b"2.0.0 Stored; held for the dispatcher")  # by a node that does not route
TEMPORARY_FAILURE = (451, b"4.3.0 Could not store the message now; try again later")
BAD_LINE_ENDING = (521, b"5.5.2 Error reading DATA: bare CR or LF (invalid line ending)")
LINE_TOO_LONG = (500, b"5.5.2 Line too long")
MESSAGE_TOO_BIG = (552, b"5.3.4 Message too big")
NO_SUCH_MAILBOX = (550, b"5.1.1 No such mailbox here")
TOO_MANY_RECIPIENTS = (452, b"4.5.3 Too many recipients")
ADDRESS_TOO_LONG = (501, b"5.1.3 Address too long")
BAD_ADDRESS = (501, b"5.1.3 Malformed address")
EMPTY_HELO = (501, b"5.5.4 HELO/EHLO needs a domain")


def server_error(reply: tuple[int, bytes]) -> SMTPServerError:
    """For a refused MAIL or RCPT (twisted wants the text as str there)."""
    return SMTPServerError(reply[0], reply[1].decode("ascii"))


def data_error(reply: tuple[int, bytes]) -> SMTPServerError:
    """For a refused DATA (twisted sends the text as it is: bytes)."""
    return SMTPServerError(reply[0], reply[1])
