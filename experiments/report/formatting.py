"""How report.md writes a number, a label or a table: one place, so every section says "n/a" (and
"-", "+1.0", "[+0.0, +2.0]") the same way.

A number can be missing two ways: not measured (the analysis returns None: leakage without teacher
text, copy rates without exemplar answers, the no-leak columns without gold step counts) or
undefined (NaN: a relative gain over a 0% baseline, a gain with no paired row). In a summary table
both are pandas' missing value; the text says NOT_AVAILABLE for either (a section that knows a
whole column is not measured says so in words), a label "-", and a CSV an empty cell (CSV_MISSING).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

NOT_AVAILABLE = "n/a"  # a number not measured or undefined, in report.md
CSV_MISSING = ""  # the same in summary.csv and counterfactuals.csv (pandas' default na_rep)


def missing(x: Any) -> bool:
  """Not measured (None, or pandas' NA) or undefined (NaN)."""
  return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def label(x: Any) -> str:
  return "-" if missing(x) or x == "" else str(x)


def pct(x: Any, digits: int = 1) -> str:
  return NOT_AVAILABLE if missing(x) else f"{100.0 * float(x):.{digits}f}%"


def points(x: Any) -> str:
  return NOT_AVAILABLE if missing(x) else f"{float(x):+.1f}"


def policy_cells(r: Any) -> list:
  """The cells that name a per-policy table row: task, student, teacher, checkpoint, `policy` (and, for
  a summary row of a matched control, the triggers it matches, and whether the config lists it too)."""
  return [r.task, r.student, label(r.teacher), label(r.checkpoint), f"`{r.policy}`" + control_note(r)]


def control_note(r: Any) -> str:
  """' (matched to `T`)' for a control's summary row, ' (listed; also matched to `T`)' when the config
  lists the same spec; '' for any other row (or a table without the columns)."""
  triggers = getattr(r, "matched_to", None)
  if missing(triggers) or not triggers:
    return ""
  names = ", ".join(f"`{t}`" for t in str(triggers).split(";"))
  listed = getattr(r, "listed", False)
  return (
    f" (listed; also matched to {names})"
    if not missing(listed) and bool(listed)
    else f" (matched to {names})"
  )


def ci(low: Any, high: Any) -> str:
  return NOT_AVAILABLE if missing(low) or missing(high) else f"[{float(low):+.1f}, {float(high):+.1f}]"


def paired_reading(low: Any, high: Any, first: str, second: str) -> str:
  """The verdict of a paired difference first - second from its CI, the only way the report separates
  two policies (never the overlap of their marginal CIs): "<first> better", "<second> better" or "not
  separated"; NOT_AVAILABLE without a CI."""
  if missing(low) or missing(high):
    return NOT_AVAILABLE
  if low > 0:
    return f"{first} better"
  if high < 0:
    return f"{second} better"
  return "not separated"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub-markdown table (no tabulate dependency); '|' in cells is escaped."""

  def cell(v: Any) -> str:
    return str(v).replace("|", "\\|")

  lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)
