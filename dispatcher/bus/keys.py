"""Redis key names: wire API shared by every node, versioned in the name."""

PREFIX = "switchboard:v1"


def leader(name: str) -> str:
    """The lock held by the one router of a deployment (`name`: the database it routes)."""
    return f"{PREFIX}:leader:{name}"
