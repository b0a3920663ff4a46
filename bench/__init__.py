"""sessiongraph's benchmark harness (issue 5): ``uv run python -m bench --help``.

It starts ``sessiongraph serve`` on a fresh embedded Postgres, drives it over HTTP from this
separate process, runs the peers (``langgraph dev``, Aegra) from their own throwaway venvs,
and writes ``bench/results/<date>-<commit>.json`` and ``bench/RESULTS.md``. It is never
collected by pytest (the suite asserts no timings).
"""
