"""Sweeps: config -> grid (problems x policies x seeds) -> fixed-shape batches -> results.jsonl.

run: the driver (`run_sweep`); config: the typed config, parsed once; grid: rows and their ids;
fork_plan: which rows run how and in which batches (pure); runner: runs that plan and records rows;
store: the append-only results file; lock: one writer per results file; manifest: what defines an
output dir's rows, checked on resume; distributed: meshes and multi-host row sharding.
"""
