"""The experiment runner: a config's grid of trials, each schedule -> edit -> evaluate ->
restore, written to a run folder one finished trial at a time.

Usage::

    from corredit.runner import run_experiment, Runner
    df = run_experiment("corredit/configs/demo.toml", out="runs/demo")  # tidy rows
    df = run_experiment(cfg, requests=reqs, handle=h)      # edits and model in memory
    Runner(cfg, "runs/x", workers=2).run()                 # the RunFolder; resumes

The flow, one module each:

- :mod:`~corredit.runner.inputs`: what a run computes once (edits, model, statistics,
  embeddings, schedules, shared value vectors), cached on disk where costly;
- :mod:`~corredit.runner.trial`: one trial, schedule -> (edit -> suites)* -> restore;
- :mod:`~corredit.runner.run`: the grid into a locked, resumable run folder;
- :mod:`~corredit.runner.parallel`: trials in worker processes.

The suites are :mod:`corredit.evaluate.suite`'s; row conventions are those of
:mod:`corredit.results`.
"""

from corredit.runner.inputs import RunInputs
from corredit.runner.run import Runner, check_device, code_version, run_experiment
from corredit.runner.trial import retention_checkpoints, run_trial

__all__ = ["Runner", "run_experiment", "RunInputs", "run_trial", "retention_checkpoints",
           "code_version", "check_device"]
