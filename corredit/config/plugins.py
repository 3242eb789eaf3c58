"""A run's own registered components: modules or files imported before its names are
checked, and the ``corredit.plugins`` entry points of installed packages.

Usage::

    # run.toml
    imports = ["my_lab.editors", "plugins/my_scheduler.py"]

    # pyproject.toml of a package that adds components
    [project.entry-points."corredit.plugins"]
    my_lab = "my_lab.corredit_plugins"

Importing such a module registers its entries (``@register_editor``,
``@SCHEDULERS.register``, ``EMBEDDERS.register``, ``SUITES.register``), so ``corredit run``
and worker processes find them by name.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

__all__ = ["import_plugins", "ENTRY_POINT_GROUP"]

#: The entry-point group whose modules are imported before any run.
ENTRY_POINT_GROUP = "corredit.plugins"

_loaded_entry_points = False


def import_plugins(imports: Iterable[str] = ()) -> None:
    """Import every entry of ``imports`` (a dotted module name, or a ``.py`` file path)
    and, once per process, the ``corredit.plugins`` entry points; a failure raises
    ``ValueError`` naming the entry."""
    global _loaded_entry_points
    if not _loaded_entry_points:
        _loaded_entry_points = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception as exc:
                raise ValueError(f"entry point {ep.name!r} of group {ENTRY_POINT_GROUP!r} "
                                 f"({ep.value}): {type(exc).__name__}: {exc}") from exc
    for i, name in enumerate(imports):
        try:
            _import_one(name)
        except Exception as exc:
            raise ValueError(f"imports[{i}]: cannot import {name!r}: "
                             f"{type(exc).__name__}: {exc}") from exc


def _import_one(name: str) -> None:
    if not name.endswith(".py"):
        importlib.import_module(name)
        return
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    module_name = f"corredit_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
