"""The ``status`` subcommand: where a run folder stands, whatever executor runs it.

Usage::

    corredit status RUN_DIR            # counts, the driver, running and failed trials
    corredit status RUN_DIR --json     # the same as one JSON object

A trial is finished (its rows are written), running (a worker says so and the run's
driver holds the folder's lock), interrupted (it was running when the driver stopped),
failed (the error is shown) or pending. Torch-free.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``status`` subcommand."""
    status = subparsers.add_parser(
        "status", help="finished, running and failed trials of a run folder",
        description="Show how many trials of RUN_DIR are finished, running, interrupted, "
                    "failed (with their errors) and pending, and whether its driver runs.")
    status.add_argument("run_dir", help="a run folder written by 'corredit run'")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument("--traceback", action="store_true",
                        help="show the end of each failed trial's traceback")
    status.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    from corredit.runner.executors.state import run_status

    st = run_status(args.run_dir)
    if args.json:
        print(json.dumps(st.to_dict(), indent=2))
        return 0
    counts = [f"{len(st.finished)} finished", f"{len(st.running)} running",
              f"{len(st.failed)} failed", f"{len(st.pending)} pending"]
    if st.interrupted:
        counts.insert(2, f"{len(st.interrupted)} interrupted")
    print(f"{st.root}: {len(st.trials)} trials: {', '.join(counts)}")
    d = st.driver
    if st.driver_alive:
        where = f" ({d.executor}, host {d.host}, pid {d.pid}, since {d.started})" if d else ""
        print(f"driver: running{where}")
    else:
        print("driver: not running" + ("" if len(st.finished) == len(st.trials)
                                        else " (rerun 'corredit run' to resume)"))
    for title, group in (("running", st.running), ("interrupted", st.interrupted)):
        if group:
            print(f"{title}:")
            for name, r in group.items():
                print(f"  {name}  {r.get('host', '?')} pid {r.get('pid', '?')} "
                      f"since {r.get('time', '?')}")
    if st.failed:
        print("failed:")
        for name, r in st.failed.items():
            print(f"  {name}  {r.get('host', '?')} {r.get('time', '')}: {r.get('error', '?')}")
            if args.traceback and r.get("traceback"):
                print("    " + r["traceback"].rstrip().replace("\n", "\n    "))
    return 0
