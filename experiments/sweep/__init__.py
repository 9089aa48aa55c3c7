"""Sweeps: config -> grid (problems x policies x seeds) -> fixed-shape batches -> results.jsonl.

run: the driver (`run_sweep`); grid: rows and their ids; runner: batching, plain and fork mode;
store: the append-only results file; lock: one writer per results file; manifest: what defines an
output dir's rows, checked on resume; distributed: meshes and multi-host row sharding.
"""
