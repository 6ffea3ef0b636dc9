"""CLI subcommands: each module has ``add_parser(subparsers, parents)`` and ``run(args) -> int``."""
