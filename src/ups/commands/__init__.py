"""Command-line commands: each module parses its arguments and calls the library.

`scripts/<name>.py` and `ups <command>` run the same `main`, so there is one
parser per command.
"""
