"""Runs sweep rows through one Decoder in fixed-shape batches, plain or forked.

Fork mode: the student decodes alone once per (problem, seed); every "teacher from step K" row then
starts from that run's own prefix up to step K. Both models prefill each problem's prompt + student
run once (`Decoder.prefill`, a batch of problems at a time), and every timing's row starts
from those caches, so no prefix is decoded or prefilled twice. Because a row's sampling key depends
only on (problem, seed, position), forked rows equal plain rows exactly.
"""

from __future__ import annotations

import dataclasses

from tqdm import tqdm

from decode.api import Decoder, DecodeRequest, Sampling
from decode.core.policy import TRIGGER_NONE, TRIGGER_RANDOM, parse_policy
from decode.host.prefix_caches import SharedPrefix
from decode.host.results import RowResult
from experiments.sweep.calibration import calibrate, matched_random_spec, realized_rate
from experiments.sweep.grid import SweepRow, forkable
from experiments.sweep.store import ResultsStore
from experiments.tasks.answers import score
from experiments.tasks.prompts import exemplar_answers, gold_step_count

NEVER = parse_policy("never")


@dataclasses.dataclass
class DecodeSettings:
  batch_size: int
  max_len: int
  max_new_tokens: int
  max_steps: int | None = None
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0


class SweepRunner:
  def __init__(
    self,
    decoder: Decoder,
    store: ResultsStore,
    settings: DecodeSettings,
    *,
    fork: bool = True,
    progress: bool = True,
    shared_prefix: SharedPrefix | None = None,
    matched_random: bool = False,
  ):
    self.decoder, self.store, self.settings, self.fork = decoder, store, settings, fork
    self.shared_prefix = shared_prefix  # caches of the prompts' common prefix (few-shot exemplars)
    self.matched_random = matched_random  # add random:P at each trigger's realized rate P
    self.progress = progress
    self.loop_calls = 0
    self._bar = None

  # -- records -----------------------------------------------------------------------------------
  def record(self, row: SweepRow, res: RowResult, mode: str) -> dict:
    # A row stopped by non-finite logits is never scored: its text is not the model's answer.
    pred, correct = (None, False) if res.error else score(res.completion, row.problem.answer)
    rec = res.to_json()
    rec.update(
      row_id=row.row_id,
      task=row.task,
      problem_id=row.problem.problem_id,
      student=row.student.name,
      checkpoint=row.student.checkpoint,
      teacher=row.teacher,
      policy=row.policy.spec,
      seed=row.seed,
      prediction=pred,
      answer=row.problem.answer,
      correct=correct,
      mode=mode,
      gold_steps=gold_step_count(row.problem),  # the report's no-leak subset: gold steps > K
      exemplar_answers=exemplar_answers(row.prompt),  # the report's few-shot copy rate
      threshold=row.policy.threshold if row.policy.trigger != TRIGGER_NONE else None,  # as calibrated
      matched_to=row.matched_to,  # a matched random control: the trigger policy it matches
    )
    return rec

  # -- decoding ----------------------------------------------------------------------------------
  def _decode(
    self, rows: list[SweepRow], prefixes=None, prefix_steps=None, policies=None, caches=None
  ) -> list[RowResult]:
    s = self.settings
    out: list[RowResult] = []
    if caches is not None and len(rows) > s.batch_size:
      raise ValueError("rows with caches are decoded one batch at a time")
    for i in range(0, len(rows), s.batch_size):
      chunk = rows[i : i + s.batch_size]
      ids = self.decoder.encode([r.prompt for r in chunk])
      pols = policies[i : i + s.batch_size] if policies else [r.policy for r in chunk]
      request = DecodeRequest(
        ids,
        pols,
        s.max_new_tokens,
        sampling=Sampling(s.temperature, s.top_k, s.top_p, seed=[r.row_seed for r in chunk]),
        max_steps=s.max_steps,
        prefixes=prefixes[i : i + s.batch_size] if prefixes else None,
        prefix_steps=prefix_steps[i : i + s.batch_size] if prefix_steps else None,
        texts=[r.prompt for r in chunk],  # the prompt text a teacher that reads text reads (the bridge)
        max_len=s.max_len,
        batch_size=s.batch_size,
        caches=caches,
        shared_prefix=self.shared_prefix,
      )
      out += self.decoder.generate(request)
      self._count_call()
    return out

  def _count_call(self) -> None:
    self.loop_calls += 1
    if self._bar is not None:
      self._bar.update(1)

  def _run_and_store(self, rows: list[SweepRow], mode: str, **kw) -> list[RowResult]:
    """Decodes in batches, appending each finished batch before the next starts."""
    s = self.settings
    results = []
    for i in range(0, len(rows), s.batch_size):
      sl = slice(i, i + s.batch_size)
      part = self._decode(rows[sl], **{k: v[sl] if v else None for k, v in kw.items()})
      self.store.append(self.record(r, res, mode) for r, res in zip(rows[sl], part))
      results += part
    return results

  def _n_batches(self, n: int) -> int:
    return -(-n // self.settings.batch_size)

  def run(self, rows: list[SweepRow]) -> None:
    """Decodes every row not yet in the store; calibrated triggers after the student-only rows they
    are calibrated on, and matched random controls (`matched_random`) after their triggers."""
    self.decoder.check_steps([r.policy for r in rows], self.settings.max_steps)  # before any row is written
    if any(r.policy.needs_calibration for r in rows):
      self._run_rows([r for r in rows if r.policy.spec == "never"])
      thresholds = {}
      rows = [self._calibrated(r, thresholds) if r.policy.needs_calibration else r for r in rows]
    self._run_rows(rows)
    if self.matched_random:
      self._run_rows(self._matched_random_rows(rows))

  def _calibrated(self, row: SweepRow, cache: dict) -> SweepRow:
    """The row with its `q=` trigger's threshold set from the same student's `never` rows."""
    group = (row.task, row.student.name, row.student.checkpoint, row.policy.spec)
    if group not in cache:
      never = [
        rec
        for rec in self.store.rows.values()
        if rec["policy"] == "never" and (rec["task"], rec["student"], rec["checkpoint"]) == group[:3]
      ]
      cache[group] = calibrate(row.policy, never)
    return dataclasses.replace(row, policy=cache[group])

  def _matched_random_rows(self, rows: list[SweepRow]) -> list[SweepRow]:
    """For each trigger policy, `random:P` rows on the same problems at its realized rate P."""
    groups: dict[tuple, list[SweepRow]] = {}
    for r in rows:
      if r.policy.trigger not in (TRIGGER_NONE, TRIGGER_RANDOM):
        groups.setdefault((r.task, r.student.name, r.student.checkpoint, r.policy.spec), []).append(r)
    out = []
    for group, members in groups.items():
      rate = realized_rate(self.store.rows[r.row_id] for r in members if self.store.done(r.row_id))
      if rate != rate:  # no step starts: nothing to match
        continue
      control = parse_policy(matched_random_spec(rate))
      out += [dataclasses.replace(r, policy=control, matched_to=group[3]) for r in members]
    return out

  def _run_rows(self, rows: list[SweepRow]) -> None:
    pending = [r for r in rows if not self.store.done(r.row_id)]
    if not pending:
      return
    plain = [r for r in pending if not (self.fork and forkable(r.policy))]
    forked = [r for r in pending if self.fork and forkable(r.policy) and r.policy.spec != "never"]
    base_rows = [r for r in pending if self.fork and r.policy.spec == "never"]
    base: dict[tuple, RowResult] = {}
    for rec in self.store.rows.values():  # finished student-only runs are reused, not re-decoded
      if rec["policy"] == "never":
        base[(rec["task"], rec["student"], rec["checkpoint"], rec["seed"], rec["problem_id"])] = (
          RowResult.from_record(rec)
        )
    key = lambda r: (r.task, r.student.name, r.student.checkpoint, r.seed, r.problem.problem_id)
    recorded = {key(b) for b in base_rows}
    internal = {key(r): r for r in forked if key(r) not in base and key(r) not in recorded}
    total = self._n_batches(len(plain)) + self._n_batches(len(base_rows)) + self._n_batches(len(internal))
    total += self._n_batches(len(forked))
    self._bar = tqdm(total=total, desc="batches", disable=not self.progress)
    try:
      self._run_and_store(plain, "plain")
      for r, res in zip(base_rows, self._run_and_store(base_rows, "base")):
        base[key(r)] = res
      helper_rows = list(internal.values())
      for r, res in zip(helper_rows, self._decode(helper_rows, policies=[NEVER] * len(helper_rows))):
        base[key(r)] = res  # student-only runs the grid did not ask to record
      self._run_forked(forked, base, key)
    finally:
      self._bar.close()
      self._bar = None

  def _run_forked(self, rows: list[SweepRow], base: dict, key) -> None:
    copied, to_run, prefixes, prefix_steps = [], [], [], []
    for r in rows:
      b = base[key(r)]
      k = r.policy.step_lo
      if k not in b.step_ids:  # the student stopped before step K: the teacher never acts
        copied.append(self.record(r, dataclasses.replace(b, policy=r.policy.spec), "copied"))
        continue
      cut = b.step_ids.index(k)
      to_run.append(r)
      prefixes.append(b.token_ids[:cut])
      prefix_steps.append(k - 1)
    self.store.append(copied)
    # Problems in groups of one batch: one prefill of each group's prompts + student runs (as far as
    # its latest timing needs), then all the group's timings start from those caches.
    B = self.settings.batch_size
    rows_of: dict[tuple, list[int]] = {}  # problem key -> indices into to_run, in order
    for i, r in enumerate(to_run):
      rows_of.setdefault(key(r), []).append(i)
    problems = list(rows_of)
    groups = [problems[g : g + B] for g in range(0, len(problems), B)]
    members_of = [[i for k in group for i in rows_of[k]] for group in groups]
    if self._bar is not None:  # copied rows need no loop call; each group needs a prefill call
      self._bar.total = self._bar.n + len(groups) + sum(self._n_batches(len(m)) for m in members_of)
      self._bar.refresh()
    for group, members in zip(groups, members_of):
      slot = {k: i for i, k in enumerate(group)}
      caches = self.decoder.prefill(
        self.decoder.encode([to_run[rows_of[k][0]].prompt for k in group]),
        [base[k].token_ids[: max(len(prefixes[i]) for i in rows_of[k])] for k in group],
        max_len=self.settings.max_len,
        batch_size=B,
        shared_prefix=self.shared_prefix,
      )
      self._count_call()
      # Batch rows with similar remaining budgets together: a batch runs until its longest row ends.
      order = sorted(members, key=lambda i: (-len(prefixes[i]), i))
      for c in range(0, len(order), B):
        chunk = order[c : c + B]
        part = self._decode(
          [to_run[i] for i in chunk],
          prefixes=[prefixes[i] for i in chunk],
          prefix_steps=[prefix_steps[i] for i in chunk],
          caches=caches.rows([slot[key(to_run[i])] for i in chunk], B),
        )
        self.store.append(self.record(to_run[i], res, "fork") for i, res in zip(chunk, part))
