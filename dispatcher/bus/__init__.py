"""Redis, for messages between the nodes of a deployment (to come: intake on any node telling
the router, offers reaching an agent's socket on whichever node holds it). Never the source of
truth, and never what decides who routes: that is the lease on the database
(storage/lease.py)."""
