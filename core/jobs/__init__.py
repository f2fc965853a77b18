"""Generation jobs: a queue kept in the SQLite history database, run one at a time by a supervised worker.

- :mod:`core.jobs.store`: the ``jobs`` table (queued, running, done, failed, cancelled, interrupted).
- :mod:`core.jobs.submit`: a request checked before it is queued.
- :mod:`core.jobs.runner`: the app's runner (one job at a time, live progress for pages that follow it).
- :mod:`core.jobs.supervisor` / :mod:`core.jobs.worker`: the worker process and the app's side of it.
- :mod:`core.jobs.eta`: an ETA for the whole job (denoise, decode, write).

``python -m core jobs [--json]`` lists the jobs.
"""
