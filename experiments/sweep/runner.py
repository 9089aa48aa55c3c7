"""Runs sweep rows through one Decoder in fixed-shape batches, plain or forked.

Fork mode: the student decodes alone once per (problem, seed); every "teacher from step K" row then
starts from that run's own prefix up to step K. Both models prefill each problem's prompt + student
run once (`Decoder.prefill`, a batch of problems at a time), and every timing's row starts
from those caches, so no prefix is decoded or prefilled twice. Because a row's sampling key depends
only on (problem, seed, position), forked rows equal plain rows exactly. Which rows run how, in which
batches, is decided up front (fork_plan.py); this module runs that plan and records the rows.

A resumed or grown sweep: rows already in the results are never decoded again, and their `never`
rows are the base runs new timings fork from (prefilled again, not decoded again). Calibrated
thresholds and matched rates come from the dir's record (thresholds.py) once set, and are set once
for the whole grid however many processes share it (calibrator.py).
"""

from __future__ import annotations

import dataclasses

from tqdm import tqdm

from decode.api import Decoder, DecodeRequest, Sampling
from decode.bridge.rows import result_from_record
from decode.core.policy import STUDENT_ONLY, Policy, parse_policy
from decode.host.prefix_caches import SharedPrefix
from decode.host.results import RowResult
from experiments.sweep.calibration import matched_control
from experiments.sweep.calibrator import SweepCalibrator
from experiments.sweep.fork_plan import ForkGroup, cut, fork_batches, plan_rows, prefill_lengths
from experiments.sweep.grid import SweepRow, record_base_key
from experiments.sweep.store import ResultsStore
from experiments.sweep.thresholds import CalibrationBook, held_rate
from experiments.tasks.answers import score
from experiments.tasks.prompts import exemplar_answers, gold_step_count

NEVER = parse_policy(STUDENT_ONLY)


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
    calibrator: SweepCalibrator | None = None,
  ):
    self.decoder, self.store, self.settings, self.fork = decoder, store, settings, fork
    self.shared_prefix = shared_prefix  # caches of the prompts' common prefix (few-shot exemplars)
    self.matched_random = matched_random  # add random:P at each trigger's realized rate P
    # Thresholds and matched rates (one per spec for the whole grid, fixed once set; in memory if None).
    self.calibrator = calibrator or SweepCalibrator(store, CalibrationBook())
    self.progress = progress
    self.loop_calls = 0
    self.kept: set[str] = set()  # rows this run lists that were in the results before it
    self.new: set[str] = set()  # rows this run wrote
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
      threshold=None if row.policy.fixed_timing else row.policy.threshold,  # as calibrated
      matched_to=row.matched_to,  # a matched random control: the trigger policy it matches
    )
    return rec

  # -- the decoder's two calls (one place each) --------------------------------------------------
  def _generate(self, rows, policies=None, prefixes=None, prefix_steps=None, caches=None) -> list[RowResult]:
    """One loop call on at most batch_size rows (their own policies unless `policies`)."""
    s = self.settings
    request = DecodeRequest(
      self.decoder.encode([r.prompt for r in rows]),
      policies or [r.policy for r in rows],
      s.max_new_tokens,
      sampling=Sampling(s.temperature, s.top_k, s.top_p, seed=[r.row_seed for r in rows]),
      max_steps=s.max_steps,
      prefixes=prefixes,
      prefix_steps=prefix_steps,
      texts=[r.prompt for r in rows],  # the prompt text a teacher that reads text reads (the bridge)
      max_len=s.max_len,
      batch_size=s.batch_size,
      caches=caches,
      shared_prefix=self.shared_prefix,
    )
    out = self.decoder.generate(request)
    self._count_call()
    return out

  def _prefill(self, rows: list[SweepRow], prefixes: list[list[int]]):
    """One prefill call: both models' caches of each row's prompt + prefix (fork mode)."""
    caches = self.decoder.prefill(
      self.decoder.encode([r.prompt for r in rows]),
      prefixes,
      max_len=self.settings.max_len,
      batch_size=self.settings.batch_size,
      shared_prefix=self.shared_prefix,
    )
    self._count_call()
    return caches

  def _count_call(self) -> None:
    self.loop_calls += 1
    self._tick(1)

  def _tick(self, n: int) -> None:
    if self._bar is not None and n:
      self._bar.update(n)

  @property
  def superseded(self) -> int:
    """Rows moved aside because their threshold or matched rate was set again."""
    return self.calibrator.superseded

  # -- the grid ----------------------------------------------------------------------------------
  def run(self, rows: list[SweepRow], grid: list[SweepRow] | None = None) -> None:
    """Decodes every row of `rows` not yet in the store; calibrated triggers after the student-only
    rows they are calibrated on, and matched random controls (`matched_random`) after their triggers.

    `grid`: every process's rows (default `rows`): thresholds and matched rates are the grid's.
    """
    grid = rows if grid is None else grid
    self.decoder.check_steps([r.policy for r in rows], self.settings.max_steps)  # before any row is written
    if any(r.policy.needs_calibration for r in grid):
      self._run_rows([r for r in rows if r.policy.student_only()])
      policies = self._thresholds(rows, grid)
      rows, grid = ([self._with(r, policies) for r in x] for x in (rows, grid))
    self._run_rows(rows)
    if self.matched_random:
      self._run_rows(self._matched_random_rows(rows, grid))

  @staticmethod
  def group(row: SweepRow) -> tuple:
    """(task, student, checkpoint, spec): the rows that share one threshold and one matched control."""
    return (*row.student_key, row.policy.spec)

  def _with(self, row: SweepRow, policies: dict) -> SweepRow:
    """The row with its group's calibrated policy (as it is when its group has none)."""
    group = self.group(row)
    return dataclasses.replace(row, policy=policies[group]) if group in policies else row

  def _thresholds(self, rows: list[SweepRow], grid: list[SweepRow]) -> dict[tuple, Policy]:
    """Calibrated policies by group: every group of the grid for the calibrator's writer, which sets
    them (from the same student's `never` rows of the grid), this process's groups for the others."""
    out = {}
    for r in grid if self.calibrator.writer else rows:
      group = self.group(r)
      if r.policy.needs_calibration and group not in out:
        never = {x.row_id for x in grid if x.policy.student_only() and x.student_key == r.student_key}
        out[group] = r.policy.calibrated(self.calibrator.threshold(group, r.policy, never))
    return out

  def _matched_random_rows(self, rows: list[SweepRow], grid: list[SweepRow]) -> list[SweepRow]:
    """For each trigger policy, `random:P` rows on the same problems at its realized rate P over the
    grid's rows (the recorded P once set, so a grown sweep's controls stay one spec)."""
    mine = trigger_groups(rows)
    out = []
    for group, members in trigger_groups(grid).items():
      if group not in mine and not self.calibrator.writer:
        continue
      rate = self.calibrator.matched_rate(group, members)
      if rate is None:  # no step starts: nothing to match
        continue
      control = matched_control(members[0].policy, rate)
      out += [dataclasses.replace(r, policy=control, matched_to=group[-1]) for r in mine.get(group, [])]
    return out

  def _append(self, records) -> None:
    records = list(records)
    self.new.update(r["row_id"] for r in records)
    self.store.append(records)

  # -- running a plan ----------------------------------------------------------------------------
  def _run_rows(self, rows: list[SweepRow]) -> None:
    """Plans the pending rows (fork_plan.plan_rows), then runs the plan: plain rows, base runs, the
    helper base runs forks need, then each fork group; every finished batch is stored before the next."""
    self.kept.update(r.row_id for r in rows if self.store.done(r.row_id) and r.row_id not in self.new)
    base: dict[tuple, RowResult] = {  # finished student-only runs are reused, not re-decoded
      record_base_key(rec): result_from_record(rec)
      for rec in self.store.rows.values()
      if rec["policy"] == STUDENT_ONLY
    }
    plan = plan_rows(
      rows,
      finished={r.row_id for r in rows if self.store.done(r.row_id)},
      base_runs=base.keys(),
      fork=self.fork,
      batch_size=self.settings.batch_size,
    )
    if plan.empty:
      return
    self._bar = tqdm(total=plan.calls, desc="batches", disable=not self.progress)  # fixed from the start
    try:
      for batch in plan.plain:
        self._append(self.record(r, res, "plain") for r, res in zip(batch, self._generate(batch)))
      for batch in plan.base:
        results = self._generate(batch)
        self._append(self.record(r, res, "base") for r, res in zip(batch, results))
        base.update((r.base_key, res) for r, res in zip(batch, results))
      for batch in plan.helpers:  # student-only runs the grid did not ask to record
        base.update((r.base_key, res) for r, res in zip(batch, self._generate(batch, [NEVER] * len(batch))))
      for group in plan.forks:
        self._run_fork_group(group, base)
    finally:
      self._bar.close()
      self._bar = None

  def _run_fork_group(self, group: ForkGroup, base: dict[tuple, RowResult]) -> None:
    """One prefill of the group's prompts + base runs (as far as its latest timing needs), then every
    timing starts from those caches; a row whose base run ended before its step K is copied."""
    B = self.settings.batch_size
    cuts = [cut(r, base[r.base_key].step_ids) for r in group.rows]
    self._append(
      # the base run under the row's policy, which (a teacher's fixed timing) records no uncertainty
      self.record(
        r, dataclasses.replace(base[r.base_key], policy=r.policy.spec, step_uncertainty=[]), "copied"
      )
      for r, c in zip(group.rows, cuts)
      if c is None
    )
    lengths = prefill_lengths(group, cuts)
    runs = fork_batches(cuts, B)
    if lengths:
      first = {k: next(r for r in group.rows if r.base_key == k) for k in lengths}  # its prompt
      caches = self._prefill(list(first.values()), [base[k].token_ids[:n] for k, n in lengths.items()])
      slot = {k: i for i, k in enumerate(lengths)}
      for batch in runs:
        rows = [group.rows[i] for i in batch]
        part = self._generate(
          rows,
          prefixes=[base[group.rows[i].base_key].token_ids[: cuts[i]] for i in batch],
          prefix_steps=[r.policy.step_lo - 1 for r in rows],
          caches=caches.rows([slot[r.base_key] for r in rows], B),
        )
        self._append(self.record(r, res, "fork") for r, res in zip(rows, part))
    made = 1 + len(runs) if lengths else 0
    self._tick(group.calls - made)  # planned calls that its copied rows left unneeded


def done_already(
  rows: list[SweepRow], store: ResultsStore, book: CalibrationBook, matched_random: bool
) -> int | None:
  """How many rows `rows` and their matched controls are, when every one is in the results (the
  student need not even be loaded); None when some are to decode, or their controls' rate is unset."""
  if not all(store.done(r.row_id) for r in rows):
    return None
  n = len(rows)
  if matched_random:
    for group, members in trigger_groups(rows).items():
      rate = held_rate(book, store.rows.values(), group)
      if rate is None:
        return None
      control = matched_control(members[0].policy, rate)
      if not all(
        store.done(dataclasses.replace(r, policy=control, matched_to=group[-1]).row_id) for r in members
      ):
        return None
      n += len(members)
  return n


def trigger_groups(rows: list[SweepRow]) -> dict[tuple, list[SweepRow]]:
  """(task, student, checkpoint, spec) -> the rows of that trigger policy (each has its controls)."""
  groups: dict[tuple, list[SweepRow]] = {}
  for r in rows:
    if r.policy.uncertainty_trigger():
      groups.setdefault((*r.student_key, r.policy.spec), []).append(r)
  return groups
