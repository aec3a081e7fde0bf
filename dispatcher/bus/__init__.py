"""Redis, for what spans processes: today the leader lock that lets exactly one router run on a
database. Never the source of truth: the database is."""
