"""
``monoport-ros`` command line: reconstruct, train, evaluate, make data sets.

Each sub-command lives beside the code it drives; a module registers its parser through a
``register_cli(subparsers)`` function listed in ``COMMAND_MODULES``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    'monoport_ros.core.reconstruct_cli',
    'monoport_ros.offline.training',
    'monoport_ros.offline.synthetic',
    'monoport_ros.offline.evaluation',
    'monoport_ros.offline.multiview',
)


def build_parser() -> argparse.ArgumentParser:
    """Parser with every available sub-command."""
    parser = argparse.ArgumentParser(prog='monoport-ros', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; each sub-command sets ``func(args) -> int``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f'monoport-ros {args.command}: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
