"""Sweeps: config -> grid (problems x policies x seeds) -> fixed-shape batches -> results.jsonl.

run: the driver (`run_sweep`); config: the typed config, parsed once; problems: the task's problems,
exemplars and prompts; grid: rows and their ids; fork_plan: which rows run how and in which batches
(pure); runner: runs that plan and records rows; store: the append-only results file; lock: one
writer per results file; manifest: an output dir's record, over content (what a row is, checked on
resume), extent (which rows a config lists; a sweep may grow) and identity (files by content);
thresholds: calibrated thresholds and matched rates, fixed once set; watch: run again as checkpoints
arrive; distributed: meshes and multi-host row sharding.
"""
