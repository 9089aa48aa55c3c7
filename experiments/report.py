"""Write summary.csv, report.md and the PNG plots for one sweep's output directory.

The narrative states what the numbers show, including when they contradict the paper
(e.g. when teacher help at step 1 is not the best timing). Every file is written atomically
(temp file in the same directory, then os.replace), so a reader never sees half a report.

CLI: `python -m experiments.report OUTPUT_DIR` regenerates everything from the results files.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments import analysis

PLOT_STEP = "accuracy_vs_step.png"
PLOT_FRACTION = "accuracy_vs_teacher_fraction.png"
PLOT_CHECKPOINTS = "accuracy_vs_step_by_checkpoint.png"


# --------------------------------------------------------------------------- atomic files

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory and os.replace, so readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name opened with "xb" (not mkstemp) so the file gets the usual umask permissions.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _figure_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # render with Agg without touching pyplot's global backend
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


# --------------------------------------------------------------------------- formatting

def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _label(x: Any) -> str:
    return "-" if _missing(x) or x == "" else str(x)


def _pct(x: Any, digits: int = 1) -> str:
    return "n/a" if _missing(x) else f"{100.0 * float(x):.{digits}f}%"


def _points(x: Any) -> str:
    return "n/a" if _missing(x) else f"{float(x):+.1f}"


def _ci(low: Any, high: Any) -> str:
    return "n/a" if _missing(low) or _missing(high) else f"[{float(low):+.1f}, {float(high):+.1f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table (no tabulate dependency); '|' in cells is escaped."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- summary views

def _keyed(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary with missing teacher/checkpoint as '' so they compare equal."""
    s = summary.copy()
    for col in ("teacher", "checkpoint"):
        s[col] = ["" if _missing(v) else str(v) for v in s[col]]
    return s


def _row(s: pd.DataFrame, task: str, student: str, teacher: str, checkpoint: str, policy: str) -> pd.Series | None:
    hit = s[(s.task == task) & (s.student == student) & (s.teacher == teacher)
            & (s.checkpoint == checkpoint) & (s.policy == policy)]
    return None if hit.empty else hit.iloc[0]


def _baseline_row(s: pd.DataFrame, task: str, student: str, teacher: str, checkpoint: str) -> pd.Series | None:
    """Student-only row for a config; a teacher-less "never" row serves every teacher."""
    row = _row(s, task, student, teacher, checkpoint, "never")
    return row if row is not None or teacher == "" else _row(s, task, student, "", checkpoint, "never")


def _panels(s: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, teacher) panels: one per teacher that guided something, else per task."""
    guided = s[(s.policy != "never") & (s.teacher != "")]
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


def _step_curve(ax: Any, s: pd.DataFrame, task: str, student: str, teacher: str, checkpoint: str,
                color: Any, label: str, references: bool, dx: float = 0.0) -> bool:
    """Accuracy vs K for one config, K=0 = student alone; error bars = 95% CI of the paired gain."""
    steps = s[(s.task == task) & (s.student == student) & (s.teacher == teacher)
              & (s.checkpoint == checkpoint) & s.step_k.notna()].sort_values("step_k")
    base = _baseline_row(s, task, student, teacher, checkpoint)
    always = _row(s, task, student, teacher, checkpoint, "always")
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
        ax.axhline(100.0 * base.accuracy, color=color, linestyle="--", linewidth=1, alpha=0.7,
                   label=f"{label}: student only")
    if references and always is not None:
        ax.axhline(100.0 * always.accuracy, color=color, linestyle=":", linewidth=1.5, alpha=0.9,
                   label=f"{label}: teacher only (always)")
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
    s = _keyed(summary)
    panels = _panels(s)
    fig, axes = _grid(len(panels))
    for ax, (task, teacher) in zip(axes, panels):
        drew = False
        students = _students(s, task)
        for i, student in enumerate(students):
            ckpt = _main_checkpoint(s, task, student)
            label = student if ckpt == "" else f"{student} @ {ckpt}"
            drew |= _step_curve(ax, s, task, student, teacher, ckpt, f"C{i}", label, references=True,
                                dx=_jitter(i, len(students)))
        ax.set_title(_panel_title(task, teacher), fontsize=10)
        _finish_step_axes(ax, drew)
    fig.suptitle("Accuracy vs the step the teacher writes (error bars: 95% bootstrap CI of the gain)", fontsize=10)
    return _figure_png(fig)


def plot_accuracy_vs_teacher_fraction(summary: pd.DataFrame) -> bytes:
    """Cost vs benefit: every policy as a point (x = share of tokens the teacher wrote)."""
    s = _keyed(summary)
    panels = _panels(s)
    fig, axes = _grid(len(panels))
    for ax, (task, teacher) in zip(axes, panels):
        for i, student in enumerate(_students(s, task)):
            ckpt = _main_checkpoint(s, task, student)
            pts = s[(s.task == task) & (s.student == student) & (s.checkpoint == ckpt)
                    & ((s.teacher == teacher) | ((s.policy == "never") & (s.teacher == "")))]
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
    s = _keyed(summary)
    panels = [(task, teacher, student) for task, teacher in _panels(s) for student in _students(s, task)
              if (s[(s.task == task) & (s.student == student)].checkpoint != "").any()]
    fig, axes = _grid(len(panels))
    for ax, (task, teacher, student) in zip(axes, panels):
        ckpts = sorted(set(s[(s.task == task) & (s.student == student)].checkpoint) - {""},
                       key=analysis.natural_sort_key)
        colors = [(0.15 + 0.7 * i / max(1, len(ckpts) - 1)) for i in range(len(ckpts))]
        drew = False
        for j, (ckpt, c) in enumerate(zip(ckpts, colors)):
            drew |= _step_curve(ax, s, task, student, teacher, ckpt, (1 - c, 0.35, c), ckpt, references=False,
                                dx=_jitter(j, len(ckpts)))
        ax.set_title(_panel_title(task, teacher, f"student {student}"), fontsize=10)
        _finish_step_axes(ax, drew)
    fig.suptitle("Accuracy vs teacher step K for each student checkpoint (K=0: student alone)", fontsize=10)
    return _figure_png(fig)


# --------------------------------------------------------------------------- narrative

def _config_findings(s: pd.DataFrame, task: str, student: str, teacher: str, checkpoint: str) -> list[str]:
    """Bullet points for one (task, student, teacher, checkpoint): baseline, best policy, timing."""
    rows = s[(s.task == task) & (s.student == student) & (s.teacher == teacher) & (s.checkpoint == checkpoint)]
    base = _baseline_row(s, task, student, teacher, checkpoint)
    always = _row(s, task, student, teacher, checkpoint, "always")
    out = []
    ref = f"- Student alone: {_pct(base.accuracy) if base is not None else 'n/a (no never rows)'}"
    if always is not None:
        ref += f"; teacher writes everything (`always`): {_pct(always.accuracy)}"
    out.append(ref + ".")
    guided = rows[~rows.policy.isin(["never", "always"])]
    if not guided.empty:
        best = guided.sort_values(["accuracy", "teacher_fraction"], ascending=[False, True]).iloc[0]
        line = (f"- Best guided policy: `{best.policy}` at {_pct(best.accuracy)} "
                f"(gain {_points(best.gain_points)} points, 95% CI {_ci(best.gain_ci_low, best.gain_ci_high)}"
                + (f", {best.gain_rel_pct:+.0f}% relative" if not _missing(best.gain_rel_pct) else "")
                + f"; teacher wrote {_pct(best.teacher_fraction)} of tokens).")
        if not _missing(best.gain_points) and best.gain_points <= 0:
            line += " No guided policy beats the student alone here."
        if always is not None and best.accuracy > always.accuracy:
            line += " It beats the teacher writing everything."
        out.append(line)
    steps = rows[rows.step_k.notna()].sort_values("step_k")
    if not steps.empty:
        gains = ", ".join(f"K={int(r.step_k)}: {_points(r.gain_points)}" for r in steps.itertuples())
        out.append(f"- Gain over the student alone (points) when the teacher writes step K: {gains}.")
        out.append(_timing_sentence(steps))
    return [line for line in out if line]


def _timing_sentence(steps: pd.DataFrame) -> str:
    """Is step 1 the best time for the teacher to step in? Said plainly either way."""
    first = steps[steps.step_k == 1]
    later = steps[steps.step_k > 1]
    if first.empty or later.empty or first.gain_points.isna().all():
        return "" if not first.empty else "- No `step:1` rows, so the first-step effect is not measured here."
    f = first.iloc[0]
    top = later.sort_values("gain_points", ascending=False).iloc[0]
    k = int(top.step_k)
    if f.gain_points > top.gain_points:
        text = (f"- Step 1 is the best timing: {_points(f.gain_points)} points vs at most "
                f"{_points(top.gain_points)} for a later step (`step:{k}`).")
    elif f.gain_points == top.gain_points:
        text = f"- Step 1 ties with `step:{k}` ({_points(f.gain_points)} points)."
    else:
        text = (f"- Step 1 is NOT the best timing here: `step:{k}` gains {_points(top.gain_points)} points "
                f"vs {_points(f.gain_points)} for `step:1`.")
    overlap = not (f.gain_ci_low > top.gain_ci_high or top.gain_ci_low > f.gain_ci_high)
    text += (" Their 95% CIs overlap, so this sample does not separate them." if overlap
             else " Their 95% CIs do not overlap.")
    g = steps.gain_points.to_numpy(dtype=float)
    if len(g) > 2:
        text += (" Gains never rise as K grows." if np.all(np.diff(g) <= 0)
                 else " Gains do not fall monotonically with K.")
    return text


def render_markdown(df: pd.DataFrame, summary: pd.DataFrame, plots: dict[str, str], source: str) -> str:
    """The report text; `plots` maps a caption to an image path relative to report.md."""
    s = _keyed(summary)
    parts = ["# Teacher guidance report", "",
             f"Generated from {len(df)} result rows in `{source}`. Accuracy is exact-match on the final "
             "number; gains are paired with the student-only (`never`) row of the same problem and seed, "
             "with 95% bootstrap CIs resampling problems.", ""]

    sizes = analysis.dataset_sizes(df)
    parts += ["## Data", "", markdown_table(list(sizes.columns), sizes.itertuples(index=False)), ""]

    never = s[s.policy == "never"]
    parts += ["## Student-only accuracy", ""]
    if never.empty:
        parts += ["No `never` rows: gains, rescue and harm cannot be computed.", ""]
    else:
        parts += [markdown_table(["task", "student", "teacher", "checkpoint", "n", "accuracy"],
                                 [[r.task, r.student, _label(r.teacher), _label(r.checkpoint), r.n, _pct(r.accuracy)]
                                  for r in never.itertuples()]), ""]

    parts += ["## Findings", ""]
    configs = s[s.policy != "never"][["task", "student", "teacher", "checkpoint"]].drop_duplicates()
    if configs.empty:
        parts += ["Only student-only rows: nothing to compare.", ""]
    for c in configs.itertuples(index=False):
        head = f"### {c.task} / student {c.student}"
        head += f" / teacher {c.teacher}" if c.teacher else ""
        head += f" / checkpoint {c.checkpoint}" if c.checkpoint else ""
        parts += [head, "", *_config_findings(s, c.task, c.student, c.teacher, c.checkpoint), ""]

    parts += ["## Plots", ""]
    parts += [f"![{caption}]({path})\n" for caption, path in plots.items()]

    if PLOT_CHECKPOINTS in plots.values():
        step1 = s[(s.step_k == 1) & (s.checkpoint != "")]
        if not step1.empty:
            parts += ["### First-step gain by checkpoint", "",
                      markdown_table(["task", "student", "teacher", "checkpoint", "student alone", "step:1",
                                      "gain (points)", "95% CI"],
                                     [[r.task, r.student, _label(r.teacher), r.checkpoint, _pct(r.baseline_accuracy),
                                       _pct(r.accuracy), _points(r.gain_points), _ci(r.gain_ci_low, r.gain_ci_high)]
                                      for r in step1.itertuples()]), ""]

    parts += ["## Summary", "",
              markdown_table(["task", "student", "teacher", "checkpoint", "policy", "n", "accuracy",
                              "gain (points)", "95% CI", "relative", "teacher tokens", "switches", "leakage"],
                             [[r.task, r.student, _label(r.teacher), _label(r.checkpoint), f"`{r.policy}`", r.n,
                               _pct(r.accuracy), _points(r.gain_points), _ci(r.gain_ci_low, r.gain_ci_high),
                               "n/a" if _missing(r.gain_rel_pct) else f"{r.gain_rel_pct:+.0f}%",
                               _pct(r.teacher_fraction), f"{r.mean_switches:.2f}", _pct(r.leakage_rate)]
                              for r in s.itertuples()]), ""]

    guided = s[s.policy != "never"]
    parts += ["## Rescue and harm", "",
              "Rescue: the student alone was wrong and the guided run right; harm: the reverse.", ""]
    parts += [markdown_table(["task", "student", "teacher", "checkpoint", "policy", "paired", "rescue", "harm", "net"],
                             [[r.task, r.student, _label(r.teacher), _label(r.checkpoint), f"`{r.policy}`",
                               r.n_paired, r.rescue, r.harm, f"{int(r.rescue) - int(r.harm):+d}"]
                              for r in guided.itertuples()]) if not guided.empty else "No guided rows.", ""]

    parts += ["## Leakage", "", _leakage_text(df, s), ""]
    return "\n".join(parts)


def _leakage_text(df: pd.DataFrame, s: pd.DataFrame) -> str:
    """How often the teacher's own text already contains the gold answer (as a whole number)."""
    d = analysis.prepare(df)
    wrote = d[d.teacher_text.str.len() > 0]
    if wrote.empty:
        return "No row records any teacher text (`teacher_text`), so leakage is not measured."
    leaked = [analysis.answer_leaked(t, a) for t, a in zip(wrote.teacher_text, wrote.answer)]
    n_leak = int(np.sum(leaked))
    partial = wrote[wrote.policy != "always"]
    n_partial = int(np.sum([analysis.answer_leaked(t, a) for t, a in zip(partial.teacher_text, partial.answer)]))
    lines = [f"The gold answer appears as a number in the teacher's text in {n_leak} of {len(wrote)} rows "
             f"where the teacher wrote ({_pct(n_leak / len(wrote))})."]
    if len(partial):
        lines.append(f"Excluding `always` (where the teacher writes the final answer by design): "
                     f"{n_partial} of {len(partial)} ({_pct(n_partial / len(partial))}). "
                     + ("Gains on these rows may partly be the teacher handing over the answer rather than "
                        "a better start." if n_partial else
                        "So the guided gains are not the teacher handing over the answer."))
    flagged = s[(s.leakage_rate > 0) & (s.policy != "always")]
    if not flagged.empty:
        lines += ["", markdown_table(["task", "student", "teacher", "checkpoint", "policy", "leakage rate"],
                                     [[r.task, r.student, _label(r.teacher), _label(r.checkpoint), f"`{r.policy}`",
                                       _pct(r.leakage_rate)] for r in flagged.itertuples()])]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry points

def write_report(output_dir: str | Path, df: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write summary.csv, report.md and the plots into `output_dir`; returns name -> path.

    `df` defaults to every results*.jsonl in `output_dir` (see analysis.load_results). Keys:
    'summary', 'report', 'accuracy_vs_step', 'accuracy_vs_teacher_fraction' and, when the rows
    carry more than one checkpoint label, 'accuracy_vs_step_by_checkpoint'.
    """
    output_dir = Path(output_dir)
    if df is None:
        df = analysis.load_results(output_dir)
    if len(df) == 0:
        raise FileNotFoundError(f"no result rows for {output_dir}")
    summary = analysis.summarize(df)
    paths: dict[str, Path] = {"summary": output_dir / "summary.csv"}
    atomic_write_bytes(paths["summary"], summary.to_csv(index=False).encode())

    plots = {"Accuracy vs intervention step": (PLOT_STEP, plot_accuracy_vs_step),
             "Accuracy vs teacher-token fraction": (PLOT_FRACTION, plot_accuracy_vs_teacher_fraction)}
    if len(analysis.checkpoints_of(df)) > 1:
        plots["Accuracy vs intervention step, per checkpoint"] = (PLOT_CHECKPOINTS, plot_accuracy_vs_step_by_checkpoint)
    for name, plot in plots.values():
        paths[name.removesuffix(".png")] = output_dir / name
        atomic_write_bytes(output_dir / name, plot(summary))

    text = render_markdown(df, summary, {caption: name for caption, (name, _) in plots.items()}, output_dir.name)
    paths["report"] = output_dir / "report.md"
    atomic_write_bytes(paths["report"], text.encode())
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help="directory holding results*.jsonl")
    args = parser.parse_args(argv)
    try:
        if not args.output_dir.is_dir():
            raise FileNotFoundError(f"{args.output_dir} is not a directory")
        paths = write_report(args.output_dir)
    except FileNotFoundError as err:  # nothing to report on
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # e.g. a corrupt results line: the message names file and line
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
