"""Every CLI's start, quiet about backends nobody asked for: one switch, `quiet_startup_logs`.

At its first use jax tries each backend it knows and logs the ones that fail: on a machine without
a TPU, `Unable to initialize backend 'tpu': ... Failed to open libtpu.so` (INFO, which absl CLIs
print), and where an NVIDIA device file exists without a CUDA jaxlib, `An NVIDIA GPU may be present
on this machine ...` (WARNING). matplotlib warns `Matplotlib is building the font cache` on its first
import on a machine. Users read these lines as errors though the run is fine, so CLIs drop exactly
these records; a backend asked for by name (JAX_PLATFORMS) still fails loudly, as jax raises rather
than logs then. `--verbose` (or FSG_VERBOSE=1, for a CLI without flags) shows them again.
"""

from __future__ import annotations

import argparse
import logging
import os

VERBOSE_ENV = "FSG_VERBOSE"
VERBOSE_HELP = f"show jax's backend probing and matplotlib's font-cache notice (or set {VERBOSE_ENV}=1)"

# logger -> the messages it is quiet about (substrings of the formatted message)
_PROBE_MESSAGES = {
  "jax._src.xla_bridge": ("Unable to initialize backend", "may be present on this machine"),
  "matplotlib.font_manager": ("Matplotlib is building the font cache",),
}


class _DropProbes(logging.Filter):
  """Drops a logger's records that contain one of `texts`; the logger's other records pass."""

  def __init__(self, texts: tuple[str, ...]):
    super().__init__()
    self.texts = texts

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in self.texts)


def verbose_from_env() -> bool:
  return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_startup_logs(verbose: bool = False) -> None:
  """Call first in a CLI's main. Quiet: drop the lines above. Verbose (or FSG_VERBOSE=1): show them,
  the INFO ones included (on stderr, even in a CLI that configures no logging). Idempotent."""
  verbose = verbose or verbose_from_env()
  for name, texts in _PROBE_MESSAGES.items():
    logger = logging.getLogger(name)
    for old in [f for f in logger.filters if isinstance(f, _DropProbes)]:
      logger.removeFilter(old)
    if verbose:
      logger.setLevel(logging.INFO)
    else:
      logger.addFilter(_DropProbes(texts))
  if verbose and not logging.getLogger().handlers:
    logging.basicConfig(format="%(levelname)s:%(name)s: %(message)s")


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
  """`--verbose` for an argparse CLI; pass its value to `quiet_startup_logs`."""
  parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
