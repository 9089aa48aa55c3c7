"""Every error of decode/ a user can fix: one home, each a `model.errors.UserError` (one line, exit 2)."""

from __future__ import annotations

from model.errors import UserError


class DecodeInputError(UserError):
  """Bad arguments to generation (lengths, limits, policies, caches)."""


class PolicyError(UserError):
  """A policy spec that cannot be parsed or used as asked."""


class VocabError(UserError):
  """A step delimiter the tokenizer cannot express."""


class TokenizerMismatchError(UserError):
  """Student and teacher do not share a tokenizer: the loop would mix incompatible token ids."""


class TeacherServerError(UserError):
  """The teacher's server is down, refuses a request, or answers with something unusable."""
