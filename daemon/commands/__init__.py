"""The bodies of the `sigd` commands and their terminal output.

One module per command (or per pair of commands): it turns the parsed flags into calls of the
library modules, and prints what a person reads. The library modules under daemon/, pipeline/,
models/ and strategies/ return values and log; they never print (tests/test_imports.py).
daemon/service/cli.py maps each command name to its function here.
"""
