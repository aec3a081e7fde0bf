"""Agents: skills with levels, chosen status, per-channel capacity and the interruption matrix.

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


DEFAULT_INTERRUPTIONS = InterruptionMatrix()


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
