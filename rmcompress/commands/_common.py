"""Argument boilerplate shared by the subcommands (no heavy imports: the CLI reads this before TF)."""
from __future__ import annotations


def model_to_out_parser(sub, parents, name: str, *, help: str, description: str, model_help: str,
                        out_help: str):
    """A subcommand that reads the model directory ``--model`` and writes the directory ``--out``
    (``--overwrite`` replaces an existing one); returns the parser for the command's own options."""
    p = sub.add_parser(name, parents=parents, help=help, description=description)
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p
