"""Plots of one sweep's summary table (matplotlib Agg, no pyplot global state). How the text writes
numbers is in formatting; the summary lookups the plots share with the text are in summary_views.

matplotlib is imported when a figure is drawn, not with this module: a CLI has set up its logging
by then (model.startup_logs: the font-cache notice), and commands that never plot never load it.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from decode.core.policy import STUDENT_ONLY, TEACHER_ONLY
from experiments.report import analysis
from experiments.report.summary_views import baseline_row, keyed, summary_row

if TYPE_CHECKING:
  from matplotlib.figure import Figure


def _figure_png(fig: Figure) -> bytes:
  from matplotlib.backends.backend_agg import FigureCanvasAgg

  FigureCanvasAgg(fig)  # render with Agg without touching pyplot's global backend
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
  return buf.getvalue()


def _panels(s: pd.DataFrame) -> list[tuple[str, str]]:
  """(task, teacher) panels: one per teacher that guided something, else per task."""
  guided = s[(s.policy != STUDENT_ONLY) & (s.teacher != "")]
  src = guided if not guided.empty else s
  pairs = {(t, te) for t, te in zip(src.task, src.teacher)}
  return sorted(pairs, key=lambda p: (p[0], analysis.natural_sort_key(p[1])))


def _main_checkpoint(s: pd.DataFrame, task: str, student: str) -> str:
  """The checkpoint the headline plots use: the unlabelled run if any, else the latest label."""
  labels = set(s[(s.task == task) & (s.student == student)].checkpoint)
  return "" if "" in labels or not labels else sorted(labels, key=analysis.natural_sort_key)[-1]


def _students(s: pd.DataFrame, task: str) -> list[str]:
  return sorted(set(s[s.task == task].student))


def _grid(n: int, width: float = 7.5, height: float = 4.2) -> tuple[Figure, list[Any]]:
  from matplotlib.figure import Figure

  ncols = min(3, max(1, n))
  nrows = math.ceil(max(1, n) / ncols)
  fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
  axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(max(1, n))]
  return fig, axes


def _jitter(i: int, n: int) -> float:
  """Small x offset of line i of n, so coinciding points and error bars stay distinguishable."""
  return 0.06 * (i - (n - 1) / 2)


def _panel_title(task: str, teacher: str, extra: str = "") -> str:
  title = task if teacher == "" else f"{task} - teacher {teacher}"
  return f"{title}\n{extra}" if extra else title


def _step_curve(
  ax: Any,
  s: pd.DataFrame,
  task: str,
  student: str,
  teacher: str,
  checkpoint: str,
  color: Any,
  label: str,
  references: bool,
  dx: float = 0.0,
) -> bool:
  """Accuracy vs K for one config, K=0 = student alone; error bars = 95% CI of the paired gain."""
  steps = s[
    (s.task == task)
    & (s.student == student)
    & (s.teacher == teacher)
    & (s.checkpoint == checkpoint)
    & s.step_k.notna()
  ].sort_values("step_k")
  base = baseline_row(s, task, student, teacher, checkpoint)
  always = summary_row(s, task, student, teacher, checkpoint, TEACHER_ONLY)
  if steps.empty and base is None and always is None:
    return False
  xs, ys = list(steps.step_k.astype(float)), list(100.0 * steps.accuracy)
  centre = 100.0 * steps.baseline_accuracy
  lower = np.clip(np.asarray(ys) - (centre + steps.gain_ci_low).to_numpy(dtype=float), 0, None)
  upper = np.clip((centre + steps.gain_ci_high).to_numpy(dtype=float) - np.asarray(ys), 0, None)
  if base is not None:
    xs, ys = [0.0] + xs, [100.0 * base.accuracy] + ys
    lower, upper = np.r_[0.0, lower], np.r_[0.0, upper]
  if xs:
    yerr = np.vstack([np.nan_to_num(lower), np.nan_to_num(upper)])
    ax.errorbar(np.asarray(xs) + dx, ys, yerr=yerr, color=color, marker="o", capsize=3, label=label)
  if references and base is not None:
    ax.axhline(
      100.0 * base.accuracy,
      color=color,
      linestyle="--",
      linewidth=1,
      alpha=0.7,
      label=f"{label}: student only",
    )
  if references and always is not None:
    ax.axhline(
      100.0 * always.accuracy,
      color=color,
      linestyle=":",
      linewidth=1.5,
      alpha=0.9,
      label=f"{label}: teacher only (always)",
    )
  return True


def _finish_step_axes(ax: Any, drew: bool) -> None:
  ax.set_xlabel("teacher writes step K (0 = student alone)")
  ax.set_ylabel("accuracy (%)")
  ax.xaxis.get_major_locator().set_params(integer=True)
  ax.grid(alpha=0.3)
  if drew:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  else:
    ax.text(0.5, 0.5, "no step:K or baseline rows", ha="center", va="center", transform=ax.transAxes)


# --------------------------------------------------------------------------- plots


def plot_accuracy_vs_step(summary: pd.DataFrame) -> bytes:
  """The paper's curve: one line per student, with student-only and teacher-only references."""
  s = keyed(summary)
  panels = _panels(s)
  fig, axes = _grid(len(panels))
  for ax, (task, teacher) in zip(axes, panels):
    drew = False
    students = _students(s, task)
    for i, student in enumerate(students):
      ckpt = _main_checkpoint(s, task, student)
      label = student if ckpt == "" else f"{student} @ {ckpt}"
      drew |= _step_curve(
        ax, s, task, student, teacher, ckpt, f"C{i}", label, references=True, dx=_jitter(i, len(students))
      )
    ax.set_title(_panel_title(task, teacher), fontsize=10)
    _finish_step_axes(ax, drew)
  fig.suptitle(
    "Accuracy vs the step the teacher writes (error bars: 95% bootstrap CI of the gain)", fontsize=10
  )
  return _figure_png(fig)


def plot_accuracy_vs_teacher_fraction(summary: pd.DataFrame) -> bytes:
  """Cost vs benefit: every policy as a point (x = share of tokens the teacher wrote)."""
  s = keyed(summary)
  panels = _panels(s)
  fig, axes = _grid(len(panels))
  for ax, (task, teacher) in zip(axes, panels):
    for i, student in enumerate(_students(s, task)):
      ckpt = _main_checkpoint(s, task, student)
      pts = s[
        (s.task == task)
        & (s.student == student)
        & (s.checkpoint == ckpt)
        & ((s.teacher == teacher) | ((s.policy == STUDENT_ONLY) & (s.teacher == "")))
      ]
      pts = pts.drop_duplicates("policy")
      if pts.empty:
        continue
      label = student if ckpt == "" else f"{student} @ {ckpt}"
      ax.scatter(100.0 * pts.teacher_fraction, 100.0 * pts.accuracy, color=f"C{i}", label=label, zorder=3)
      for x, y, p in zip(pts.teacher_fraction, pts.accuracy, pts.policy):
        ax.annotate(p, (100.0 * x, 100.0 * y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_title(_panel_title(task, teacher), fontsize=10)
    ax.set_xlabel("teacher-written tokens (% of all generated)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  fig.suptitle("Accuracy vs teacher-token fraction, one point per policy", fontsize=10)
  return _figure_png(fig)


def plot_accuracy_vs_step_by_checkpoint(summary: pd.DataFrame) -> bytes:
  """How the value of early guidance changes as the student trains: one line per checkpoint."""
  s = keyed(summary)
  panels = [
    (task, teacher, student)
    for task, teacher in _panels(s)
    for student in _students(s, task)
    if (s[(s.task == task) & (s.student == student)].checkpoint != "").any()
  ]
  fig, axes = _grid(len(panels))
  for ax, (task, teacher, student) in zip(axes, panels):
    ckpts = sorted(
      set(s[(s.task == task) & (s.student == student)].checkpoint) - {""}, key=analysis.natural_sort_key
    )
    colors = [(0.15 + 0.7 * i / max(1, len(ckpts) - 1)) for i in range(len(ckpts))]
    drew = False
    for j, (ckpt, c) in enumerate(zip(ckpts, colors)):
      drew |= _step_curve(
        ax,
        s,
        task,
        student,
        teacher,
        ckpt,
        (1 - c, 0.35, c),
        ckpt,
        references=False,
        dx=_jitter(j, len(ckpts)),
      )
    ax.set_title(_panel_title(task, teacher, f"student {student}"), fontsize=10)
    _finish_step_axes(ax, drew)
  fig.suptitle("Accuracy vs teacher step K for each student checkpoint (K=0: student alone)", fontsize=10)
  return _figure_png(fig)


def plot_earliest_rescue(dist: pd.DataFrame) -> bytes:
  """Which step first rescues a student-alone failure: bars per K (and "none"), one colour per student.

  `dist` is `analysis.earliest_rescue_distribution`; heights are shares of each student's failures,
  so students of different strength compare. Panels and checkpoints as in the step plot.
  """
  d = keyed(dist)
  panels = sorted(
    {(t, te) for t, te in zip(d.task, d.teacher)}, key=lambda p: (p[0], analysis.natural_sort_key(p[1]))
  )
  fig, axes = _grid(len(panels))
  for ax, (task, teacher) in zip(axes, panels):
    here = d[(d.task == task) & (d.teacher == teacher)]
    buckets = sorted(
      set(here.earliest), key=lambda e: (e == analysis.NOT_RESCUED, int(e) if e.isdigit() else 0)
    )
    students = _students(here, task)
    width = 0.8 / max(1, len(students))
    for i, student in enumerate(students):
      ckpt = _main_checkpoint(here, task, student)
      bars = here[(here.student == student) & (here.checkpoint == ckpt)].set_index("earliest")
      heights = [100.0 * bars.share.get(b, 0.0) for b in buckets]
      n_failed = int(bars.n_failed.iloc[0]) if len(bars) else 0
      name = student if ckpt == "" else f"{student} @ {ckpt}"
      xs = np.arange(len(buckets)) + (i - (len(students) - 1) / 2) * width
      ax.bar(xs, np.nan_to_num(heights), width=width, color=f"C{i}", label=f"{name} ({n_failed} failures)")
    ax.set_xticks(np.arange(len(buckets)), [f"K={b}" if b.isdigit() else "none" for b in buckets])
    ax.set_xlabel("earliest teacher step K that rescues (none: no swept step does)")
    ax.set_ylabel("student-alone failures (%)")
    ax.set_title(_panel_title(task, teacher), fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  fig.suptitle("Earliest step at which the teacher's step turns a student-alone failure right", fontsize=10)
  return _figure_png(fig)
