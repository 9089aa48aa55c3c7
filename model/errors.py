"""Errors a user can fix; CLIs print them without a traceback and exit non-zero."""


class ModelLoadError(ValueError):
  """A model directory, checkpoint or config that cannot be loaded as asked."""
