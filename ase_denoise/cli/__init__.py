"""The command line, ``ase-denoise <command>``: one module per group of commands; printing and progress
bars live here, the library only logs.

* :mod:`ase_denoise.cli.fit` - ``fit``: the validated path, one command;
* :mod:`ase_denoise.cli.train` - ``train``: the low-level one;
* :mod:`ase_denoise.cli.run` - ``md``, ``eval``;
* :mod:`ase_denoise.cli.refine` - ``choose-forces``, ``check-md``, ``refine-structure``,
  ``refine-torsions``, ``correct-mean-forces``;
* :mod:`ase_denoise.cli.models` - ``models``, ``demo``;
* :mod:`ase_denoise.cli.common` - the table of commands and what the groups share.

Commands import the library inside their functions: ``ase-denoise --help`` and ``ase-denoise models list``
must not pay for importing torch and MACE (start-up cost, seconds)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from ..errors import AseDenoiseError
from . import fit, models, refine, run, train
from .common import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    """The ``ase-denoise`` parser: every group adds its commands (argparse lists them all in the help)."""
    parser = argparse.ArgumentParser(
        prog="ase-denoise", description="Learn a force field from atomic coordinates alone: train a denoiser, run "
        "it, check and correct it against its own data without labels, and use the model zoo.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (fit, train, run, refine, models):
        group.add_parsers(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)
    args.argv = argv  # how the command was called (a fit writes it into its card)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return COMMANDS[args.command](args)
    except (AseDenoiseError, ValueError, OSError) as exc:  # bad input, files, settings: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
