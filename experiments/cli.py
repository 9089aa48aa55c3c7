"""Flag parsing for the absl/ml_collections CLIs (sweep, train, distill) with the one error contract.

absl exits 1 on a bad flag, and ml_collections raises from inside the parser (a traceback) for an
override of a key the config lacks (`--config.no_such_key=1`) or a config file that fails to load.
Every such failure is a user error here: `error: ...` on stderr and exit 2 (model.errors), so
`app.run(main, flags_parser=parse_flags)`. The parser also sets up the CLI's logging: quiet about
jax's backend probing unless `--verbose` (model.startup_logs; absl would print its INFO lines).
"""

from __future__ import annotations

import re
from typing import Sequence

from absl import flags

from model.errors import UserError, report_user_errors
from model.startup_logs import VERBOSE_HELP, quiet_startup_logs

_VERBOSE = flags.DEFINE_bool("verbose", False, VERBOSE_HELP)


class FlagError(UserError):
  """A command-line flag or config file that cannot be parsed or loaded as given."""


def _unknown_key(argv: Sequence[str], err: Exception) -> str:
  """The message for an override of a key (or list index) the config lacks, naming the flag."""
  text = str(err)
  key = re.search(r"'([\w\[\]]+)", text)
  name = key.group(1) if key else ""
  flags_given = [a.split("=", 1)[0] for a in argv if a.startswith("--config.")]
  flag = next((f for f in flags_given if name and re.search(rf"[.\]]{re.escape(name)}\b", f)), None)
  hint = re.search(r'Did you mean "([^"]+)"', text)
  what = (
    f"unknown config key {name!r}" if name else f"a --config.KEY=VALUE flag names no config entry ({text})"
  )
  return (
    what
    + (f" in {flag}" if flag else "")
    + (f" (did you mean {hint.group(1)!r}?)" if hint else "")
    + ": --config.KEY=VALUE can only set keys that the config file defines"
  )


def _parse(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # unknown flag, a value of the wrong type
    raise FlagError(f"{e} (pass --helpfull to list the flags)") from e
  except (AttributeError, KeyError, IndexError) as e:  # --config.KEY=... for a key or index the config lacks
    raise FlagError(_unknown_key(argv, e)) from e
  except Exception as e:  # the config file itself: a syntax error, get_config raising
    raise FlagError(f"cannot load the config: {type(e).__name__}: {e}") from e


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parser with every failure reported as `error: ...` and exit 2 (FSG_DEBUG=1: traceback);
  then `quiet_startup_logs(--verbose)`, before main touches jax."""
  rest = report_user_errors(lambda: _parse(argv))
  quiet_startup_logs(_VERBOSE.value)
  return rest


def config_value(holder, example: str):
  """The parsed --config; a missing flag or an unloadable file is a FlagError."""
  value = holder.value
  if value is None:
    raise FlagError(f"pass --config {example}")
  try:
    value.keys()  # a config file that failed to load is an object that raises on any access
  except OSError as e:
    raise FlagError(" ".join(str(e).split())) from e
  return value
