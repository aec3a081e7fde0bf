"""Redis key names: wire API shared by every node, versioned in the name."""

PREFIX = "switchboard:v1"
