"""The pure routing domain: standard library only, no I/O, no clock reads (`now` is an argument,
in seconds since the epoch)."""
