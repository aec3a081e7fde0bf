"""Settings of the e-mail edge: one frozen dataclass of plain values (the runtime reads them
from `[email]` in the TOML file and `SWITCHBOARD_EMAIL_*` in the environment), and the
structured forms the edge needs (recipient routes, the service's `MailPolicy`)."""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.domain.errors import InvalidValue
from dispatcher.service.mail import DAY, MailPolicy

from .bounds import (
    DEFAULT_FALLBACK_CHARSET,
    DEFAULT_MAX_ADDRESSES,
    DEFAULT_MAX_FIELD_BYTES,
    DEFAULT_MAX_FIELDS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_PARTS,
    Limits,
)
from .reading import (
    DEFAULT_BUDGET_SECONDS,
    DEFAULT_MEMORY_MB,
    DEFAULT_WAIT_SECONDS,
    DEFAULT_WORKERS,
)

HOUR = 3600.0
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients per transaction.
DEFAULT_MAX_RECIPIENTS = 100


@dataclass(frozen=True)
class EmailSettings:
    enabled: bool = True
    # SMTP intake
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    hostname: str = "switchboard.localdomain"
    recipients: str = ""  # "support@example.com=support,sales@example.com=sales"
    domains: str = ""  # our domains: any other address there goes to default_queue
    default_queue: str = ""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    tls_cert: str = ""  # PEM files; both set = STARTTLS offered
    tls_key: str = ""
    attachments_dir: str = ""  # empty: attachment content goes into the database
    # reading received messages (bounds.py, reading.py): the header is cut to these bounds
    # before parsing (a defect, never a refusal); parse + translate run in worker processes
    # within a time budget, else the message is stored raw with a header scan only
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES  # the whole header section
    max_header_field_bytes: int = DEFAULT_MAX_FIELD_BYTES  # one field, folded lines included
    max_header_fields: int = DEFAULT_MAX_FIELDS
    max_addresses: int = DEFAULT_MAX_ADDRESSES  # per address list (To, Cc, ...)
    max_mime_parts: int = DEFAULT_MAX_PARTS
    fallback_charset: str = DEFAULT_FALLBACK_CHARSET  # 8-bit text that is not UTF-8
    parse_workers: int = DEFAULT_WORKERS  # worker processes
    parse_budget_seconds: float = DEFAULT_BUDGET_SECONDS  # per message, in a worker
    parse_wait_seconds: float = DEFAULT_WAIT_SECONDS  # longest wait for a free worker
    parse_memory_mb: int = DEFAULT_MEMORY_MB  # address space of a worker (0: unlimited)
    # new SMTP sessions of one source address a minute (more: "421 4.7.0", closed); 0: no
    # limit. Concurrent sessions per address: [server] max_connections_per_ip.
    smtp_sessions_per_ip_per_minute: int = 120
    # request numbers, threading, acknowledgement
    request_prefix: str = "SB-"
    request_digits: int = 6
    reopen_days: float = 14.0
    sticky_seconds: float = 3600.0
    ack_queues: str = "*"  # comma-separated queue names, "*" = all, "" = none
    ack_period_hours: float = 24.0
    from_address: str = "support@switchboard.invalid"
    from_name: str = "Support"
    message_id_domain: str = "switchboard.invalid"
    # replies: the From address per queue ("support=help@example.com,sales=sales@example.com";
    # a queue not named answers from from_address; SMTP intake accepts these addresses too),
    # the signature below each reply (placeholders {agent_name} {queue} {request}
    # {from_name}; "\n" for a new line) and per-queue signature files
    # ("sales=/etc/switchboard/sales.sig,...")
    queue_from: str = ""
    signature: str = "{agent_name}\n{from_name}"
    signature_files: str = ""
    # outbound relay
    relay_host: str = ""  # empty: nothing is sent
    relay_port: int = 25
    relay_starttls: bool = False  # require STARTTLS
    relay_user: str = ""
    relay_password: str = ""
    relay_interval: float = 1.0
    retry_base: float = 60.0
    retry_max: float = 3600.0
    max_attempts: int = 8
    # IMAP polling (imap.py) of an existing mailbox; empty host = off
    imap_host: str = ""
    imap_port: int = 143
    imap_user: str = ""
    imap_password: str = ""  # or SWITCHBOARD_EMAIL_IMAP_PASSWORD_FILE
    imap_mailbox: str = "INBOX"
    imap_queue: str = ""  # the queue of polled messages; required with imap_host
    imap_interval: float = 30.0  # seconds between searches (without IDLE), longest IDLE (with)
    imap_idle: bool = True  # use IDLE when the server offers it
    imap_move_to: str = ""  # move each stored message to this folder (server needs MOVE)
    # true: the topmost Authentication-Results of auth_serv_id (put there by the mailbox's own
    # MTA) vouches for polled mail, whatever auth_mode says; false: polled mail is
    # unauthenticated (it joins a thread only by naming one of our Message-IDs)
    imap_trust_authentication_results: bool = False
    # sender authentication (authenticity.py): "off" (nothing authenticated), "relay" (trust
    # the Authentication-Results of auth_serv_id added by a relay in auth_trusted_relays),
    # "local" (DKIM + SPF checked here, DNS via auth_dns_servers or the system's resolver).
    # Unauthenticated mail joins a thread only by naming one of our Message-IDs.
    auth_mode: str = "off"
    auth_serv_id: str = ""  # the authserv-id of our relay's Authentication-Results
    auth_trusted_relays: str = ""  # comma-separated client IPs/CIDRs of those relays
    auth_dns_servers: str = ""  # "ip" or "ip:port", comma-separated; empty: system resolver
    auth_timeout: float = 5.0  # seconds per DNS lookup of the local checks
    # spam scoring by SpamAssassin's spamd (spam.py); empty host = unscored
    spamd_host: str = ""
    spamd_port: int = 783
    spamd_timeout: float = 10.0
    spamd_max_bytes: int = 512_000  # larger messages are not scored (spamc's own limit)
    spam_queue: str = "spam"  # where spam is parked (a pull queue, created when missing)
    # web form intake (form.py): GET/POST /forms/contact on the HTTP site
    form_enabled: bool = True
    form_queue: str = ""  # the queue of submissions; empty: default_queue
    form_address: str = ""  # the To: of the message a submission becomes; empty: from_address
    # request type -> queue:priority:category (each part may be empty), e.g.
    # "complaint=support:50:complaint,quote=sales::sales"
    form_types: str = ""
    form_products: str = ""  # comma-separated choices; empty: free text
    form_callback_priority: int = 60  # "wants a call back" raises the priority to at least this
    form_per_address_per_hour: int = 5
    form_per_ip_per_hour: int = 20
    form_max_bytes: int = 64 * 1024  # request body; larger: 413
    form_max_message_chars: int = 10_000
    form_honeypot: str = "website"  # a field hidden from people: filled in = a bot


def parse_routes(spec: str) -> dict[str, str]:
    """"a@x=q1,b@x=q2" -> {"a@x": "q1", "b@x": "q2"} (addresses lower-cased)."""
    routes: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        address, sep, queue = item.partition("=")
        if not sep or "@" not in address or not queue.strip():
            raise InvalidValue(f"email.recipients: expected address=queue, got {item!r}")
        routes[address.strip().lower()] = queue.strip()
    return routes


@dataclass(frozen=True)
class Routes:
    """Recipient address -> queue. Known: mapped, or at one of our domains when there is a
    default queue. Anything else is refused (550): we are not a relay."""

    mapping: dict[str, str]
    domains: frozenset[str]
    default_queue: str

    @classmethod
    def from_settings(cls, s: EmailSettings) -> Routes:
        """`recipients`, and the addresses we send from (`queue_from`, `from_address`):
        customers answer our mail there, and delivery reports come back to them."""
        domains = frozenset(d.strip().lower() for d in s.domains.split(",") if d.strip())
        routes = parse_routes(s.recipients)
        mapping = {address.lower(): queue for queue, address in queue_addresses(s).items()}
        # from_address too (acknowledgements come from it): to the default queue, else the
        # first routed queue; replies thread by their request number whatever the queue.
        fallback = s.default_queue.strip() or next(iter(routes.values()), "")
        if fallback and "@" in s.from_address:
            mapping.setdefault(s.from_address.strip().lower(), fallback)
        mapping.update(routes)
        return cls(mapping, domains, s.default_queue.strip())

    def queue_for(self, address: str) -> str | None:
        address = address.strip().lower()
        if address in self.mapping:
            return self.mapping[address]
        domain = address.rpartition("@")[2]
        if self.default_queue and domain in self.domains:
            return self.default_queue
        return None


def limits_from(s: EmailSettings) -> Limits:
    """The reading bounds (bounds.py) of the settings; refuses values that cannot work."""
    import codecs

    for name in ("max_header_bytes", "max_header_field_bytes", "max_header_fields",
                 "max_addresses", "max_mime_parts", "parse_workers"):
        if getattr(s, name) < 1:
            raise InvalidValue(f"email.{name}: must be at least 1, got {getattr(s, name)}")
    if not s.parse_budget_seconds > 0 or not s.parse_wait_seconds > 0:
        raise InvalidValue("email.parse_budget_seconds and email.parse_wait_seconds: must be"
                           " > 0")
    try:
        codecs.lookup(s.fallback_charset)
    except LookupError:
        raise InvalidValue(f"email.fallback_charset: unknown charset {s.fallback_charset!r}"
                           ) from None
    return Limits(header_bytes=s.max_header_bytes, field_bytes=s.max_header_field_bytes,
                  fields=s.max_header_fields, addresses=s.max_addresses,
                  parts=s.max_mime_parts, fallback_charset=s.fallback_charset)


def check_imap(s: EmailSettings) -> None:
    """Refuse IMAP settings that cannot work (at start, not at the first poll)."""
    if not s.imap_host:
        return
    if not s.imap_queue.strip():
        raise InvalidValue("email.imap_queue: required when email.imap_host is set")
    if not s.imap_user:
        raise InvalidValue("email.imap_user: required when email.imap_host is set")
    if not 0 < s.imap_port < 65536:
        raise InvalidValue(f"email.imap_port: not a port: {s.imap_port}")
    if not s.imap_interval > 0:
        raise InvalidValue(f"email.imap_interval: must be > 0, got {s.imap_interval}")
    if not s.imap_mailbox.strip():
        raise InvalidValue("email.imap_mailbox: must not be empty")


def _pairs(spec: str, what: str) -> dict[str, str]:
    """"q1=v1,q2=v2" -> {"q1": "v1", "q2": "v2"}."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        queue, sep, value = item.partition("=")
        if not sep or not queue.strip() or not value.strip():
            raise InvalidValue(f"email.{what}: expected queue=value, got {item!r}")
        out[queue.strip()] = value.strip()
    return out


def queue_addresses(s: EmailSettings) -> dict[str, str]:
    """The From address of the queues named in `queue_from` (the others use from_address)."""
    found = _pairs(s.queue_from, "queue_from")
    for queue, address in found.items():
        if "@" not in address:
            raise InvalidValue(f"email.queue_from: not an address for {queue}: {address!r}")
    return found


def signatures(s: EmailSettings) -> dict[str, str]:
    out = {}
    for queue, path in _pairs(s.signature_files, "signature_files").items():
        try:
            with open(path, encoding="utf-8") as f:
                out[queue] = f.read().strip("\n")
        except OSError as exc:
            raise InvalidValue(f"email.signature_files: {queue}: {exc}") from None
    return out


def policy_from(s: EmailSettings) -> MailPolicy:
    acks = frozenset(q.strip() for q in s.ack_queues.split(",") if q.strip())
    froms = queue_addresses(s)
    own = {s.from_address.strip().lower(), *parse_routes(s.recipients), *(
        a.lower() for a in froms.values())}
    return MailPolicy(
        queue_from=tuple(sorted(froms.items())),
        signature=s.signature.replace("\\n", "\n"),
        queue_signatures=tuple(sorted(signatures(s).items())),
        own_addresses=frozenset(own),
        own_domains=frozenset(d.strip().lower() for d in s.domains.split(",") if d.strip()),
        relay=bool(s.relay_host),
        request_prefix=s.request_prefix,
        request_digits=s.request_digits,
        reopen_window=s.reopen_days * DAY,
        sticky_seconds=s.sticky_seconds,
        ack_queues=acks,
        ack_period=s.ack_period_hours * HOUR,
        from_address=s.from_address,
        from_name=s.from_name,
        message_id_domain=s.message_id_domain,
        retry_base=s.retry_base,
        retry_max=s.retry_max,
        max_attempts=s.max_attempts,
    )
