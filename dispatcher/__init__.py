"""Switchboard's dispatcher: the routing core (domain), its use cases (service), the durable
store (storage), the cross-node bus (bus) and the composition root (runtime)."""
