"""``corredit models`` subcommands.

Usage::

    corredit models list [--json]        # every registered model: installed? cached? terms
    corredit models prepare smollm2-135m # convert and cache now (a GGUF model's first load)
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]

_COLUMNS = ("name", "architecture", "parameters", "layers", "installed", "cached", "licence", "source")


def register(subparsers: Any) -> None:
    """Add ``models list`` and ``models prepare``."""
    models = subparsers.add_parser("models", help="the registered models and their state here")
    sub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    sub.required = True
    ls = sub.add_parser("list", help="every registered model: architecture, size, source, "
                                     "licence, installed or not, cached or not")
    ls.add_argument("--json", action="store_true", help="print one JSON list")
    ls.set_defaults(func=_list)
    prep = sub.add_parser("prepare", help="locate, convert and cache a registered model")
    prep.add_argument("name")
    prep.set_defaults(func=_prepare)


def _list(args: argparse.Namespace) -> int:
    from corredit.models.catalog import model_rows

    rows = model_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [[str(r[c]).lower() if isinstance(r[c], bool) else str(r[c]) for c in _COLUMNS] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(_COLUMNS)]
    print("  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths)).rstrip())
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip())
    missing = [r for r in rows if not r["installed"]]
    for r in missing:
        print(f"to install {r['name']}: {r['install']}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from corredit.models.catalog import resolve_model_folder

    folder, spec = resolve_model_folder(args.name)
    print(f"{spec.name}: {folder}")
    return 0
