"""Benchmarks of the guided loop against Hugging Face (run: the CLI and the JSON; BENCHMARKS.md: results)."""
