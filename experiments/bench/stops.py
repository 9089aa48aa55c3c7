"""Benchmark section `stops`: what stopping rows at their answer saves, on models that write answers.

The bench pair is random (it never writes "#### N"), so this section runs the demo's shipped models
(assets/demo: the teacher and the small distilled student, trained on the synthetic GSM8K-format
task; few-shot "cot" prompts) through `python -m experiments.sweep`'s own code, the same sweep with
`stop_at_answer` off and on, interleaved, each into a fresh output dir. Reported: tokens decoded,
tokens decoded after each row's answer was complete (read from the unstopped rows with the prompt
style's stop rule over the decoded text), the sweep's wall time (compiled once before timing), and
whether every row's prediction and correctness are unchanged.
Run through experiments/bench/run.py; metrics: experiments/bench/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from experiments.bench.models import log, median, timed

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo"


def _config(out: Path, stop: bool, problems: int, max_new_tokens: int):
  from configs import demo

  c = demo.get_config()
  c.output_dir = str(out)
  c.task.num_problems = problems
  c.students = [c.students[0]]  # the small student (no checkpoints)
  c.students[0].path = str(ASSETS / "student-small")
  c.teacher.path = str(ASSETS / "teacher")
  c.policies = ("never", "step:1", "step:2", "step:3", "step:4")
  c.max_new_tokens = max_new_tokens
  c.stop_at_answer = stop
  return c


def _rows(out: Path) -> list[dict]:
  return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


def after_answer(rows: list[dict], tokenizer, rule) -> int:
  """Tokens of `rows` decoded after the token that completed their answer (by `rule` over the text)."""
  from decode.core.stops import CharMachine
  from decode.core.vocab import token_surfaces

  surfaces, machine, extra = token_surfaces(tokenizer), CharMachine(rule), 0
  for r in rows:
    state = None
    for k, t in enumerate(r["token_ids"]):
      state = machine.run(surfaces[t], state)
      if state == "done":
        extra += len(r["token_ids"]) - k - 1
        break
  return extra


def bench_stops(result: dict, problems: int = 48, max_new_tokens: int = 96, repeats: int = 1) -> None:
  from transformers import AutoTokenizer

  from experiments.sweep.run import run_sweep
  from experiments.tasks.prompts import stop_rule

  if not (ASSETS / "teacher").is_dir():
    log("stops: assets/demo missing; section skipped")
    return
  root = Path(tempfile.mkdtemp(prefix="bench_stops_"))
  runs = {False: [], True: []}
  for rep in range(repeats + 1):  # the first round compiles both programs (untimed)
    for stop in (False, True):
      out = root / f"{'stop' if stop else 'full'}_{rep}"
      seconds, _ = timed(lambda: run_sweep(_config(out, stop, problems, max_new_tokens), progress=False))
      if rep:
        runs[stop].append(seconds)
      log(f"stops: stop_at_answer={stop} {seconds:.1f} s")
  full, stopped = _rows(root / "full_0"), _rows(root / "stop_0")
  key = lambda r: r["row_id"]
  full, stopped = sorted(full, key=key), sorted(stopped, key=key)
  tok = AutoTokenizer.from_pretrained(ASSETS / "student-small")
  rule = stop_rule("cot", tok)
  decoded = lambda rows: sum(len(r["token_ids"]) for r in rows)
  result.update(
    {
      "stops_rows": len(full),
      "stops_tokens_decoded_without": decoded(full),
      "stops_tokens_decoded_with": decoded(stopped),
      "stops_tokens_decoded_ratio": decoded(stopped) / decoded(full),
      "stops_after_answer_without": after_answer(full, tok, rule),
      "stops_after_answer_with": after_answer(stopped, tok, rule),
      "stops_rows_answered": sum(r.get("answer_step") is not None for r in stopped),
      "stops_sweep_time_ratio": median(runs[True]) / median(runs[False]) if repeats else None,
      "stops_predictions_equal": [(r["prediction"], r["correct"]) for r in full]
      == [(r["prediction"], r["correct"]) for r in stopped],
    }
  )
