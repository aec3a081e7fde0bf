"""Agents: skills with levels, attributes, chosen status, per-channel capacity and the
interruption matrix.

An agent chooses a status (`available`, `break` with a reason, `offline`); the router may put
them in `not_responding` after a missed offer, until they choose again. What the agent holds
(assigned or wrap-up tasks, one pending offer) decides which channels they can take more of:
a channel needs a free slot of its capacity, and every channel already held must allow it in
the interruption matrix. The displayed presence (`busy`, `wrap_up`) is derived from that.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidValue
from .requirements import check_attributes
from .tasks import Channel

MIN_LEVEL = 0
MAX_LEVEL = 10
DEFAULT_CAPACITY: Mapping[Channel, int] = {Channel.PHONE: 1, Channel.EMAIL: 3}


class Presence(enum.StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    BREAK = "break"
    NOT_RESPONDING = "not_responding"


# What an agent may choose; BUSY and WRAP_UP are derived, NOT_RESPONDING is set by the router.
CHOSEN = frozenset({Presence.OFFLINE, Presence.AVAILABLE, Presence.BREAK})


@dataclass(frozen=True, slots=True)
class InterruptionMatrix:
    """`allows[held]` = channels that may still be offered while a task of `held` is held.
    Default: a call may interrupt e-mail work; an agent on a call is offered nothing else."""

    allows: Mapping[Channel, frozenset[Channel]] = field(
        default_factory=lambda: {
            Channel.EMAIL: frozenset({Channel.EMAIL, Channel.PHONE}),
            Channel.PHONE: frozenset(),
        }
    )

    def permits(self, held: Iterable[Channel], wanted: Channel) -> bool:
        return all(wanted in self.allows.get(h, frozenset()) for h in held)

    def as_dict(self) -> dict[str, list[str]]:
        """{held channel: [channels still offered]}, every channel named (JSON, the API)."""
        return {c.value: sorted(x.value for x in self.allows.get(c, ())) for c in Channel}

    def text(self) -> str:
        """The settings' form, e.g. `email:email,phone; phone:` (see `interruptions`)."""
        return "; ".join(f"{held}:{','.join(allowed)}" for held, allowed in self.as_dict().items())


DEFAULT_INTERRUPTIONS = InterruptionMatrix()


def interruptions(value: Any, where: str = "interruptions") -> InterruptionMatrix:
    """An interruption matrix from its settings' text (`email:email,phone; phone:` -- while
    holding e-mail, e-mail and calls may still be offered; while on a call, nothing) or from
    its JSON form ({"email": ["email", "phone"], "phone": []}). A held channel not named lets
    nothing in. InvalidValue names what is wrong."""
    pairs: list[tuple[Any, Any]]
    if isinstance(value, str):
        pairs = []
        for part in filter(None, (p.strip() for p in value.split(";"))):
            held, sep, allowed = part.partition(":")
            if not sep:
                raise InvalidValue(f"{where}: {part!r} is not HELD:CHANNEL,... (e.g. "
                                   f"'email:email,phone; phone:')")
            pairs.append((held.strip(), [a.strip() for a in allowed.split(",") if a.strip()]))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise InvalidValue(f"{where}: a text such as 'email:email,phone; phone:' or an object")
    allows: dict[Channel, frozenset[Channel]] = {}
    for held, allowed in pairs:
        if not isinstance(allowed, list | tuple | frozenset | set):
            raise InvalidValue(f"{where}.{held}: a list of channels")
        try:
            allows[Channel(held)] = frozenset(Channel(a) for a in allowed)
        except ValueError:
            raise InvalidValue(f"{where}: channels are {', '.join(c.value for c in Channel)}, "
                               f"got {held!r}: {list(allowed)!r}") from None
    return InterruptionMatrix({c: allows.get(c, frozenset()) for c in Channel})


def check_skills(skills: Mapping[str, Any]) -> dict[str, int]:
    """Validate skill levels (0-10) given as anything; return a plain dict copy."""
    for name, level in skills.items():
        if not name or not isinstance(level, int) or not MIN_LEVEL <= level <= MAX_LEVEL:
            raise InvalidValue(f"skill {name!r}: level must be an integer {MIN_LEVEL}-{MAX_LEVEL}")
    return dict(skills)


def meets(skills: Mapping[str, int], requirement: Mapping[str, int]) -> bool:
    """True when every required skill is held at or above its minimum level."""
    return all(skills.get(s, -1) >= level for s, level in requirement.items())


@dataclass(slots=True)
class Agent:
    id: str
    name: str = ""
    skills: dict[str, int] = field(default_factory=dict)
    queues: set[str] = field(default_factory=set)
    capacity: dict[Channel, int] = field(default_factory=lambda: dict(DEFAULT_CAPACITY))
    channels: set[Channel] = field(default_factory=lambda: {Channel.EMAIL, Channel.PHONE})
    disabled: bool = False  # configuration: takes no work (what they hold may be finished)
    # Configuration: what requirement expressions may read beside skills (languages, tier,
    # site...): see expressions.check_attributes.
    attributes: dict[str, Any] = field(default_factory=dict)
    # Configuration: this agent's own interruption matrix (their blend); None: the centre's.
    interruptions: InterruptionMatrix | None = None
    # Runtime: handled channels the agent has switched off for now (per-channel presence).
    paused: set[Channel] = field(default_factory=set)
    # Runtime, from the agent's devices: channels they cannot be reached on (no registered
    # phone), and channels busy outside our routing (a PBX reports the extension in a call).
    unreachable: set[Channel] = field(default_factory=set)
    engaged: set[Channel] = field(default_factory=set)
    status: Presence = Presence.OFFLINE
    break_reason: str | None = None
    idle_since: float = 0.0
    status_since: float = 0.0
    # task id -> channel, for assigned and wrap-up tasks; wrap-up ids also in `wrapping`.
    held: dict[str, Channel] = field(default_factory=dict)
    wrapping: set[str] = field(default_factory=set)
    offer_id: str | None = None
    offer_task_id: str | None = None
    offer_channel: Channel | None = None

    def __post_init__(self) -> None:
        self.skills = check_skills(self.skills)
        self.attributes = check_attributes(self.attributes)
        for ch, n in self.capacity.items():
            if n < 0:
                raise InvalidValue(f"capacity for {ch.value} must be >= 0")

    def count(self, channel: Channel) -> int:
        n = sum(1 for c in self.held.values() if c is channel)
        return n + (1 if self.offer_channel is channel else 0)

    def held_channels(self) -> set[Channel]:
        chans = set(self.held.values())
        if self.offer_channel is not None:
            chans.add(self.offer_channel)
        return chans

    def can_take(self, channel: Channel, matrix: InterruptionMatrix = DEFAULT_INTERRUPTIONS) -> bool:
        """Whether the router may offer this agent a task of `channel` right now. A channel
        engaged outside our routing counts as held and full (the interruption matrix applies)."""
        return (
            self.status is Presence.AVAILABLE
            and self.offer_id is None
            and channel in self.channels
            and channel not in self.paused
            and channel not in self.unreachable
            and channel not in self.engaged
            and self.count(channel) < self.capacity.get(channel, 0)
            and matrix.permits(set(self.held.values()) | self.engaged, channel)
        )

    def presence(self, matrix: InterruptionMatrix = DEFAULT_INTERRUPTIONS) -> Presence:
        """The presence a supervisor sees: the chosen status, refined by the work held."""
        if self.status is not Presence.AVAILABLE:
            return self.status
        if self.wrapping:
            return Presence.WRAP_UP
        if (self.held or self.engaged or self.offer_id is not None) and not any(
                self.can_take(c, matrix) for c in self.channels):
            return Presence.BUSY
        return Presence.AVAILABLE
