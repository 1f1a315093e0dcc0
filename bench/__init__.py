"""Benchmarks: commands that print tables of figures (never timed unit tests)."""
