"""Subcommands of `xrfcore` for this area (see xrfcore/cli.py)."""


def register(sub) -> None:
    """Add this area's subcommands to the argparse sub-parsers."""
