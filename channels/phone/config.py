"""Settings of the phone edge: one frozen dataclass of plain values (the runtime reads them from
`[phone]` in the TOML file and `SWITCHBOARD_PHONE_*` in the environment; the nonce secret may
come from `SWITCHBOARD_PHONE_NONCE_SECRET_FILE`), and the structured forms the edge needs (queue
addresses). Off by default: a dispatcher without phones must not open port 5060 nor make every
agent unreachable for phone tasks."""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.domain.errors import InvalidValue

from .parse import unescape

DEFAULT_SIP_PORT = 5060
MINUTE = 60.0
# RFC 3261 §13.3.1.1: a non-100 provisional response at least every minute keeps proxies on
# the path from cancelling a call that waits in the queue.
DEFAULT_QUEUED_INTERVAL = MINUTE
DEFAULT_MAX_QUEUE_WAIT = 10 * MINUTE
DEFAULT_REGISTER_MIN = 60  # RFC 3261 §10.3: a registrar may refuse shorter (423)
DEFAULT_REGISTER_MAX = 3600
DEFAULT_REGISTER_EXPIRES = 3600  # §10.2.1.1: when the REGISTER says nothing
DEFAULT_NONCE_SECONDS = 300.0
DIGEST_ALGORITHMS = ("SHA-256", "MD5")  # RFC 8760 (SHA-256, preferred) and RFC 3261 (MD5)
# Lockout of REGISTER digest guesses: this many failures per user and per source address, one
# more allowed every window / failures seconds (a token bucket: dispatcher.guard.Budget).
DEFAULT_AUTH_MAX_FAILURES = 10
DEFAULT_AUTH_FAILURE_WINDOW = 300.0
# New INVITEs (calls to queue) per source address: rate per second and burst.
DEFAULT_INVITE_RATE = 5.0
DEFAULT_INVITE_BURST = 20
# Phones whose digest code gives up on a 401 carrying any challenge but MD5 (libre < 3, the
# SIP stack of baresip <= 2; measured with baresip 1.0.0: "Register: Function not implemented").
DEFAULT_MD5_ONLY_AGENTS = "baresip v0.,baresip v1.,baresip v2."
MAX_CALLBACK_RING = 30.0  # below the agent's 2xx retransmission limit (64*T1 = 32 s)
# Queue media: position and expected wait announced this often (seconds).
DEFAULT_ANNOUNCE_INTERVAL = 45.0
MEDIA_LANGUAGES = ("en", "fr")
# Presence from the phone. A 486 says "busy" without saying until when: a minute covers a short
# direct call and costs at most one minute of an idle agent when the phone was only set to
# "do not disturb"; a phone that publishes its dialog state ends it sooner.
DEFAULT_BUSY_SECONDS = MINUTE
DEFAULT_SUBSCRIBE_MIN = 60  # RFC 6665 §4.2.1.1: 423 below a notifier's minimum
DEFAULT_SUBSCRIBE_MAX = 3600
DEFAULT_SUBSCRIBE_EXPIRES = 3600  # RFC 4235 §3.2: the dialog package's default
DEFAULT_MAX_SUBSCRIPTIONS_PER_USER = 50  # a supervisor's busy-lamp field of 50 agents
DEFAULT_MAX_SUBSCRIPTIONS = 5000
DEFAULT_WATCH_SECONDS = 600
WATCH_MODES = ("auto", "off")


@dataclass(frozen=True)
class PhoneSettings:
    enabled: bool = False
    # The SIP server (registrar, queue, proxy); off for a CTI-only deployment (cti_enabled),
    # which then opens no SIP port.
    sip_enabled: bool = True
    host: str = "127.0.0.1"  # the address we listen on and put in Via / Record-Route
    udp_port: int = DEFAULT_SIP_PORT  # 0: any free port
    tcp_port: int = DEFAULT_SIP_PORT  # 0: any free port, -1: no TCP
    realm: str = "switchboard"  # digest realm for accounts that do not name one
    # queue addresses: "support=support,sales@example.com=sales" — an entry with '@' matches
    # the Request-URI's user@host, one without matches the user part at any host
    queues: str = ""
    queued_interval: float = DEFAULT_QUEUED_INTERVAL  # 182 Queued repeated this often
    max_queue_wait: float = DEFAULT_MAX_QUEUE_WAIT  # then 480 and the task is abandoned
    register_min: int = DEFAULT_REGISTER_MIN
    register_max: int = DEFAULT_REGISTER_MAX
    register_default: int = DEFAULT_REGISTER_EXPIRES
    nonce_seconds: float = DEFAULT_NONCE_SECONDS  # a nonce older than this is stale
    nonce_secret: str = ""  # empty: a random one per start (nonces do not survive restarts)
    # digest algorithms offered, most preferred first (one WWW-Authenticate each)
    digest_algorithms: str = "SHA-256,MD5"
    # User-Agent prefixes (case-insensitive, comma-separated) challenged with MD5 only
    digest_md5_only_agents: str = DEFAULT_MD5_ONLY_AGENTS
    auth_max_failures: int = DEFAULT_AUTH_MAX_FAILURES  # per user and per source address...
    auth_failure_window: float = DEFAULT_AUTH_FAILURE_WINDOW  # ...within this many seconds
    invite_rate: float = DEFAULT_INVITE_RATE  # new INVITEs a second per source address...
    invite_burst: int = DEFAULT_INVITE_BURST  # ...with this burst; beyond: 480 + Retry-After
    require_devices: bool = True  # agents take phone tasks only with a live registration
    user_agent: str = "Switchboard"
    # --- presence from the phone (presence.py, watch.py; docs/phone.md "Presence") ---
    # A phone that answers 486 Busy Here is in a call of its own: the agent gets no call until
    # it is idle, as its dialog subscription says, else for this long (a 486 carries no end:
    # about one short call; never for ever)
    busy_seconds: float = DEFAULT_BUSY_SECONDS
    subscribe_min: int = DEFAULT_SUBSCRIBE_MIN  # SUBSCRIBE Expires bounds (423 below)...
    subscribe_max: int = DEFAULT_SUBSCRIBE_MAX  # ...cut to this above
    subscribe_default: int = DEFAULT_SUBSCRIBE_EXPIRES  # RFC 4235 §3.2: 3600 when not said
    max_subscriptions_per_user: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_USER
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS  # in total; beyond: 503
    # We subscribe to the dialog state of agents' phones whose REGISTER lists `dialog` in
    # Allow-Events ("auto"), or never ("off")
    watch_dialogs: str = "auto"
    watch_seconds: int = DEFAULT_WATCH_SECONDS  # the Expires of our SUBSCRIBEs
    # --- what queued callers hear (media.py, media_worker.py; docs/phone.md "What callers
    # hear"): early media (183 + SDP) with music on hold and announcements, on with SIP ---
    media_enabled: bool = True
    media_host: str = ""  # the RTP address (bound, and put in our SDP); empty: `host`
    media_ports: str = ""  # "20000-20999": the worker's UDP ports; empty: any free port
    media_nice: int = -10  # the worker's nice value when allowed (root, CAP_SYS_NICE); 0: as is
    media_language: str = "en"  # "en" or "fr"; a call's `language` attribute comes first
    media_languages: str = ""  # per queue: "support=en,ventes=fr"
    announce_interval: float = DEFAULT_ANNOUNCE_INTERVAL  # position and expected wait
    music_file: str = ""  # WAV 8 kHz mono PCM16, or raw .ul (µ-law) / .al (A-law)
    prompts_dir: str = ""  # a recorded prompt set: <dir>/<lang>/<name>.ul (docs/phone.md)
    callback_digit: str = ""  # "1": that RFC 4733 digit keeps the caller's place (callback)
    # --- callbacks (dialer.py; docs/phone.md "Callbacks"): the agent's phone first, then the
    # customer at this URI ({number} replaced; a trunk or gateway); empty: no SIP dialling ---
    callback_uri: str = ""  # e.g. "sip:{number}@127.0.0.1:5070"
    # the customer's phone rings this long (RFC 3725 flow I: at most 30 s, see check())
    callback_ring_timeout: float = 30.0
    callback_attempts: int = 3  # dials of the customer before the task ends as not reached
    callback_retry_delay: float = 300.0  # after a no answer, the task waits aside this long
    # --- the telephony integration API (cti.py, docs/cti-protocol.md "Telephony integration") ---
    cti_enabled: bool = False  # a JSON API over WebSocket (+ POST /cti/events) for PBXs
    cti_host: str = "127.0.0.1"
    cti_port: int = 8090  # the CTI WebSocket server; 0: any free port
    # Tokens with role `integration` (RFC 8725: the algorithm is pinned here). The defaults are
    # the console's, so `switchboard token --agent pbx1 --role integration` makes a PBX token.
    cti_jwt_algorithm: str = "HS256"
    cti_jwt_secret_file: str = ""  # HS256 shared secret; empty: the one kept in the database
    cti_jwt_public_key_file: str = ""  # RS256: PEM public key
    cti_issuer: str = "switchboard"
    cti_audience: str = "switchboard-console"
    cti_leeway_seconds: int = 30
    cti_max_token_lifetime_seconds: int = 400 * 86400  # longest `exp - iat` of a PBX token
    # dialled number (`to` of call.arrived) -> queue: "+3225550000=support,0800 123=sales"
    cti_numbers: str = ""
    cti_default_queue: str = ""  # for a call.arrived naming no queue and no mapped number
    cti_allowed_origins: str = ""  # browser origins allowed (a PBX sends none)
    cti_max_frame_bytes: int = 64 * 1024  # larger frames close the socket (1009), POSTs: 413
    # seconds from a `route` to the PBX's `call.answered`; then the route fails (no_answer)
    cti_route_timeout: float = 30.0


def parse_queues(spec: str) -> dict[str, str]:
    """"support=support,b@x=billing" -> {"support": "support", "b@x": "billing"}."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        address, sep, queue = item.partition("=")
        address = address.strip().lower()
        if address.startswith(("sip:", "sips:")):
            address = address.split(":", 1)[1]
        if not sep or not address or not queue.strip():
            raise InvalidValue(f"phone.queues: expected address=queue, got {item!r}")
        out[address] = queue.strip()
    return out


@dataclass(frozen=True)
class QueueAddresses:
    mapping: dict[str, str]

    @classmethod
    def from_settings(cls, s: PhoneSettings) -> QueueAddresses:
        return cls(parse_queues(s.queues))

    def queue_for(self, user: str | None, host: str) -> str | None:
        user = unescape(user or "").lower()
        if not user:
            return None
        return self.mapping.get(f"{user}@{host.lower()}") or self.mapping.get(user)


def algorithms(s: PhoneSettings) -> tuple[str, ...]:
    names = tuple(a.strip().upper() for a in s.digest_algorithms.split(",") if a.strip())
    return names


def md5_only_agents(s: PhoneSettings) -> tuple[str, ...]:
    return tuple(a.strip().lower() for a in s.digest_md5_only_agents.split(",") if a.strip())


def check(s: PhoneSettings) -> None:
    """Refuse settings that cannot work, at start."""
    if not (s.sip_enabled or s.cti_enabled):
        raise InvalidValue("phone: enable sip_enabled, cti_enabled or both")
    parse_queues(s.queues)
    for name in ("udp_port", "tcp_port"):
        port = getattr(s, name)
        if not -1 <= port < 65536 or (name == "udp_port" and port < 0):
            raise InvalidValue(f"phone.{name}: not a port: {port}")
    for name in ("queued_interval", "max_queue_wait", "nonce_seconds", "cti_route_timeout"):
        if not getattr(s, name) > 0:
            raise InvalidValue(f"phone.{name}: must be > 0")
    if not 0 < s.register_min <= s.register_max:
        raise InvalidValue("phone.register_min/max: need 0 < min <= max")
    algos = algorithms(s)
    if not algos or any(a not in DIGEST_ALGORITHMS for a in algos):
        raise InvalidValue(f"phone.digest_algorithms: choose from {', '.join(DIGEST_ALGORITHMS)}")
    if s.auth_max_failures < 1 or not s.auth_failure_window > 0:
        raise InvalidValue("phone.auth_max_failures/auth_failure_window: need >= 1 and > 0")
    check_callbacks(s)
    if not s.invite_rate > 0 or s.invite_burst < 1:
        raise InvalidValue("phone.invite_rate/invite_burst: need > 0 and >= 1")
    check_presence(s)
    check_media(s)
    if not s.realm or '"' in s.realm:
        raise InvalidValue("phone.realm: must be set and contain no '\"'")


def media_languages(s: PhoneSettings) -> dict[str, str]:
    """"support=en,ventes=fr" -> {"support": "en", "ventes": "fr"}."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in s.media_languages.split(","))):
        queue, sep, lang = item.partition("=")
        lang = lang.strip().lower()
        if not sep or not queue.strip() or lang not in MEDIA_LANGUAGES:
            raise InvalidValue(f"phone.media_languages: expected queue=en|fr, got {item!r}")
        out[queue.strip()] = lang
    return out


def check_media(s: PhoneSettings) -> None:
    if s.media_language not in MEDIA_LANGUAGES:
        raise InvalidValue(f"phone.media_language: choose from {', '.join(MEDIA_LANGUAGES)}")
    media_languages(s)
    if not s.announce_interval > 0:
        raise InvalidValue("phone.announce_interval: must be > 0")
    if s.callback_digit and (len(s.callback_digit) != 1 or not s.callback_digit.isdigit()):
        raise InvalidValue("phone.callback_digit: one digit 0-9, or empty (no callbacks)")
    if s.media_ports:
        low, _, high = s.media_ports.partition("-")
        if not (low.isdigit() and (high or low).isdigit()
                and 0 < int(low) <= int(high or low) < 65536):
            raise InvalidValue(f"phone.media_ports: expected LOW-HIGH, got {s.media_ports!r}")


def check_presence(s: PhoneSettings) -> None:
    """Refuse presence settings (presence.py, watch.py) that cannot work."""
    if not s.busy_seconds > 0:
        raise InvalidValue("phone.busy_seconds: must be > 0")
    if not 0 < s.subscribe_min <= s.subscribe_max or s.watch_seconds < 1:
        raise InvalidValue("phone.subscribe_min/max, watch_seconds: need 0 < min <= max, >= 1")
    if s.max_subscriptions_per_user < 1 or s.max_subscriptions < 1:
        raise InvalidValue("phone.max_subscriptions(_per_user): need >= 1")
    if s.watch_dialogs not in WATCH_MODES:
        raise InvalidValue(f"phone.watch_dialogs: choose from {', '.join(WATCH_MODES)}")


def check_callbacks(s: PhoneSettings) -> None:
    """The callback settings (dialer.py)."""
    if s.callback_uri and "{number}" not in s.callback_uri:
        raise InvalidValue("phone.callback_uri: must contain {number}")
    # The agent's phone retransmits its 200 until our ACK for 64*T1 = 32 s (RFC 3261
    # §13.3.1.4); the ACK carries the customer's answer, so the customer rings less than that.
    if not 0 < s.callback_ring_timeout <= MAX_CALLBACK_RING:
        raise InvalidValue(f"phone.callback_ring_timeout: must be > 0 and <= "
                           f"{MAX_CALLBACK_RING:g}")
    if not 1 <= s.callback_attempts <= 10 or not s.callback_retry_delay > 0:
        raise InvalidValue("phone.callback_attempts/callback_retry_delay: need 1-10 and > 0")
