"""Stop at the answer: when a row's text is complete, decided in the loop from a per-token table.

A row ends when its generated text contains one of the rule's stop texts (lm-eval-harness's
`until`: a new "Question:", the blank line before another problem, a chat turn's end), or at the
newline that ends a final-answer line: a line where one of the rule's answer markers ("####",
"answer is", "boxed{"; matched without case) is followed by a number. A marker whose number is a
numbered heading ("#### 1. Count the eggs") is no answer, and neither is a marker followed by words.

The rule is a small automaton over characters. As transformers' `StopStringCriteria` does for stop
strings, it is turned once per tokenizer into a token-level table: `next_state[s, t]` is the state
after reading token t's text from state s (so a stop text split over several tokens, or inside one,
is found), `accepting[s]` says the row's answer is complete. In the loop a row's state is one
gather per token: no host round trip, no detokenising. The table is data, so rules and rows never
recompile the loop; only its padded state count is part of the compiled shape.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.struct
import numpy as np

from decode.core.stop_rule import StopRule

_LEAD = frozenset(" \t$*_:\\{([-")  # may stand between a marker and its number
_HEADING_PUNCT = frozenset(".):")  # "#### 1. Count": a number, punctuation, then a word
_STATE_BUCKET = 16  # the table's state and class counts are padded to multiples of these, so rules of
_CLASS_BUCKET = 64  # similar size share one compiled shape

# Phases of the final-answer-line part of the automaton.
_PLAIN, _LEAD_PHASE, _NUMBER, _PUNCT = range(4)


@dataclasses.dataclass(frozen=True)
class _CharState:
  tail: str  # longest suffix of the text that may still grow into a stop text or a marker
  phase: int  # final-answer line: _PLAIN, after a marker, in its number, after punctuation
  heading: bool = False  # the marker was a heading marker ("#### 1. Count" is a heading)


_DONE = "done"  # the accepting state (absorbing)


class CharMachine:
  """The rule as an automaton over characters: `step(state, ch)`; the oracle the token table is built
  from, and what the host runs over text it already has (a forked prefix, a teacher's step)."""

  def __init__(self, rule: StopRule):
    self.rule = rule
    self.start = _CharState("", _PLAIN)
    self.headings = set(rule.heading_markers)

  def _keeps(self, s: str) -> bool:
    return any(t.startswith(s) for t in self.rule.texts) or any(
      m.startswith(s.lower()) for m in self.rule.answer_markers
    )

  def step(self, state, ch: str):
    if state == _DONE:
      return _DONE
    text = state.tail + ch
    if any(text.endswith(t) for t in self.rule.texts):
      return _DONE
    phase, heading = state.phase, state.heading
    if ch == "\n":
      if phase in (_NUMBER, _PUNCT):
        return _DONE
      phase = _PLAIN
    elif phase == _LEAD_PHASE:
      phase = _NUMBER if ch.isdigit() else (_LEAD_PHASE if ch in _LEAD else _PLAIN)
    elif phase == _NUMBER and heading and ch in _HEADING_PUNCT:
      phase = _PUNCT
    elif phase == _PUNCT and ch not in " \t":
      phase = _PLAIN if ch.isalpha() else _NUMBER  # a word: a numbered heading, not an answer
    if phase == _PLAIN:
      heading = False
      marker = next((m for m in self.rule.answer_markers if text.lower().endswith(m)), None)
      if marker is not None:
        phase, heading = _LEAD_PHASE, marker in self.headings
    tail = next((text[i:] for i in range(len(text)) if self._keeps(text[i:])), "")
    return _CharState(tail, phase, heading)

  def run(self, text: str, state=None):
    state = self.start if state is None else state
    for ch in text:
      state = self.step(state, ch)
    return state

  def stop_end(self, text: str) -> int | None:
    """Characters of `text` up to and including the one that completes the answer (None: never)."""
    state = self.start
    for i, ch in enumerate(text):
      state = self.step(state, ch)
      if state == _DONE:
        return i + 1
    return None

  def special_chars(self) -> frozenset[str]:
    """Characters the automaton tells apart one by one; every other character acts as its category."""
    marker_chars = {c for m in self.rule.answer_markers for c in (m + m.upper())}
    return frozenset(marker_chars | {c for t in self.rule.texts for c in t} | _LEAD | _HEADING_PUNCT | {"\n"})


def _category(ch: str) -> str:
  return "digit" if ch.isdigit() else "alpha" if ch.isalpha() else "space" if ch.isspace() else "other"


def _class_alphabet(special: frozenset[str]) -> list[str]:
  """One character per class: each special character, then one stand-in per category of the rest."""
  stand_ins = {}
  for code in range(32, 0x3000):
    ch = chr(code)
    if ch not in special and ch != "\n":
      stand_ins.setdefault(_category(ch), ch)
  stand_ins.setdefault("space", "\u3000")  # every ASCII space may be special; an ideographic one is not
  return sorted(special) + [stand_ins[c] for c in ("digit", "alpha", "space", "other")]


@flax.struct.dataclass
class StopTable:
  """The rule over one tokenizer's tokens (a pytree: host arrays here, traced in the loop).

  Tokens that move every state alike share a class (most tokens: a word without a marker's letters
  in a place that matters), so the table is [S, C] with C in the hundreds, not [S, V].
  """

  token_class: np.ndarray  # [V] int32
  next_state: np.ndarray  # [S, C] int32: state after reading a token of class c from state s
  accepting: np.ndarray  # [S] bool: the answer is complete (absorbing)

  def step(self, state, token):
    """State after `token` (numpy or jnp; elementwise over rows)."""
    return self.next_state[state, self.token_class[token]]

  def run(self, tokens: Sequence[int], state: int = 0) -> int:
    """The state after reading `tokens` from `state` (host side: forked prefixes, bridge rounds)."""
    for t in tokens:
      state = int(self.step(state, t))
    return state

  def start_states(self, prefixes: Sequence[Sequence[int]], rows: int) -> np.ndarray:
    """[rows] int32: each row's state after its given prefix (0 for rows past the prefixes)."""
    out = np.zeros((rows,), np.int32)
    for i, q in enumerate(prefixes):
      out[i] = self.run(q)
    return out


def _char_automaton(rule: StopRule):
  """States reachable from the start over one character per class, minimised (Moore): (transitions
  [S, K] int, accepting [S] bool, class of each special character, class per category)."""
  machine = CharMachine(rule)
  special = machine.special_chars()
  alphabet = _class_alphabet(special)
  index, order, rows = {machine.start: 0}, [machine.start], []
  while len(rows) < len(order):
    state = order[len(rows)]
    row = []
    for ch in alphabet:
      nxt = machine.step(state, ch)
      if nxt not in index:
        index[nxt] = len(order)
        order.append(nxt)
      row.append(index[nxt])
    rows.append(row)
  trans = np.asarray(rows, np.int64)  # [S, K]
  accepting = np.array([s == _DONE for s in order])
  # Moore refinement: states are equivalent when they accept alike and step into equivalent states.
  block = accepting.astype(np.int64)
  while True:
    signature = np.concatenate([block[:, None], block[trans]], axis=1)
    new = np.unique(signature, axis=0, return_inverse=True)[1].reshape(-1)
    if new.max() == block.max():
      break
    block = new
  # Renumber blocks in order of first appearance, so the start state stays 0.
  relabel: dict[int, int] = {}
  for b in block:
    relabel.setdefault(int(b), len(relabel))
  blocks = np.array([relabel[int(b)] for b in block])
  min_trans = np.zeros((len(relabel), len(alphabet)), np.int64)
  min_accept = np.zeros(len(relabel), bool)
  min_trans[blocks] = blocks[trans]
  min_accept[blocks] = accepting
  char_class = {ch: i for i, ch in enumerate(sorted(special))}
  categories = {c: len(special) + i for i, c in enumerate(("digit", "alpha", "space", "other"))}
  return min_trans, min_accept, char_class, categories


def _padded(n: int, bucket: int) -> int:
  return max(bucket, -(-n // bucket) * bucket)


def build_stop_table(rule: StopRule, surfaces: Sequence[str]) -> StopTable:
  """The token-level table of `rule` for a tokenizer whose tokens read as `surfaces` in running text.

  Each token's text is run through the character automaton from every state at once (numpy, one
  character position at a time over the tokens that long), then tokens are grouped by the column
  they produce: a 150k-token vocabulary takes a few seconds, once per decoder.
  """
  trans, accept, char_class, categories = _char_automaton(rule)
  S, V = trans.shape[0], len(surfaces)
  classes = [[char_class.get(ch, categories[_category(ch)]) for ch in text] for text in surfaces]
  lengths = np.array([len(c) for c in classes], np.int64)
  order = np.argsort(-lengths, kind="stable")  # longest first: the tokens still reading form a prefix
  cur = np.broadcast_to(np.arange(S)[:, None], (S, V)).copy()  # [S, V], tokens in `order`
  for p in range(int(lengths.max(initial=0))):
    n = int(np.sum(lengths > p))
    col = np.fromiter((classes[order[j]][p] for j in range(n)), np.int64, n)  # [n]
    cur[:, :n] = trans[cur[:, :n], col[None, :]]
  columns = np.empty((S, V), np.int64)
  columns[:, order] = cur
  distinct, token_class = np.unique(columns, axis=1, return_inverse=True)  # [S, C], [V]
  S_pad, C_pad = _padded(S, _STATE_BUCKET), _padded(distinct.shape[1], _CLASS_BUCKET)
  next_state = np.zeros((S_pad, C_pad), np.int32)
  next_state[:S, : distinct.shape[1]] = distinct
  accepting = np.zeros((S_pad,), bool)
  accepting[:S] = accept
  return StopTable(
    token_class=token_class.reshape(-1).astype(np.int32), next_state=next_state, accepting=accepting
  )
