"""The composition root: configuration, wiring of store, router and services (`app.py`, the only
place that knows every concrete class), the service tree, the HTTP site with /metrics, and the
`switchboard` command line's frame (`serve`, `db`, `demo`, `simulate`, and running the commands
the edges bring: the operator's are the admin edge's, admin/)."""
