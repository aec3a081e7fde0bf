"""The composition root: configuration, wiring of store, router and services, the service tree
and the `switchboard` command line. The only place that knows every concrete class."""
