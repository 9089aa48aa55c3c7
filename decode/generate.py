"""CLI: guided generation from local Hugging Face model directories (or a teacher server).

  python -m decode.generate --student DIR [--teacher DIR | --teacher http://HOST:PORT/v1]
      (--prompt TEXT | --prompts FILE.jsonl) [--policy SPEC] [--max-new-tokens N] [--temperature T]
      [--seed S] [--step-delimiter STR]

Prints one JSON object per prompt. A teacher with the student's tokenizer: all prompts go through
one call of the compiled loop. Any other teacher (another tokenizer, a server) writes through the
text bridge at step boundaries (decode.bridge.decoder). Errors a user can fix print `error: ...` and exit
with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import codecs
import json
import sys
from pathlib import Path

from decode.api import DecodeRequest, Sampling
from decode.core.policy import parse_policy
from decode.core.stop_rule import StopRule
from decode.errors import DecodeInputError, PolicyError
from decode.serving.client import (
  APIS,
  DEFAULT_CHAT_TEMPLATE,
  DEFAULT_KEY_ENV,
  DEFAULT_RETRIES,
  DEFAULT_TIMEOUT_S,
  ServedTeacher,
  is_url,
)
from model.errors import report_user_errors
from model.startup_logs import add_verbose_flag, quiet_startup_logs


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m decode.generate", description=__doc__.split("\n\n")[0])
  p.add_argument("--student", required=True, help="student Hugging Face model directory")
  p.add_argument(
    "--teacher",
    help="teacher model directory, or the URL of an OpenAI-compatible completions server "
    "(http://HOST:PORT/v1: vLLM, SGLang, python -m decode.serve)",
  )
  p.add_argument("--teacher-model", help="the served teacher's model name (default: the server's first)")
  p.add_argument(
    "--teacher-api-key-env",
    default=DEFAULT_KEY_ENV,
    help=f"environment variable holding the teacher server's API key (default {DEFAULT_KEY_ENV})",
  )
  p.add_argument(
    "--teacher-timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per teacher request"
  )
  p.add_argument(
    "--teacher-retries", type=int, default=DEFAULT_RETRIES, help="retries of a failed teacher request"
  )
  p.add_argument(
    "--teacher-api",
    choices=APIS,
    default="completions",
    help="a served teacher's API: completions (the text so far), or chat (one message: the chat template)",
  )
  p.add_argument(
    "--teacher-chat-template",
    default=DEFAULT_CHAT_TEMPLATE,
    help="a chat teacher's message, with {problem} and {solution} (default: decode.serving.client's)",
  )
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--prompt", help="a single prompt text")
  src.add_argument("--prompts", help='JSONL file, one {"prompt": ..., optional "policy": ...} per line')
  p.add_argument(
    "--policy",
    default="never",
    help="never | always | step:K[,n=N] | hint:K[,m=M] | "
    "entropy:T | maxprob:T | margin:T | random:P  (default: never)",
  )
  p.add_argument("--max-new-tokens", type=int, default=128)
  p.add_argument("--max-steps", type=int, default=None, help="stop a row after this many steps")
  p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
  p.add_argument("--top-k", type=int, default=0)
  p.add_argument("--top-p", type=float, default=1.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--step-delimiter", default="\\n", help="text that ends a step; escapes like \\n allowed")
  p.add_argument(
    "--stop",
    action="append",
    default=[],
    metavar="TEXT",
    help="end a row once its text contains TEXT (repeatable; escapes like \\n allowed), e.g. "
    "--stop 'Question:' --stop '\\n\\n' for a few-shot prompt; the row's answer_step says where",
  )
  p.add_argument(
    "--answer-marker",
    action="append",
    default=[],
    metavar="TEXT",
    help="end a row at the end of a line where TEXT (lowercase, matched without case) is followed by "
    "a number, e.g. --answer-marker '####' --answer-marker 'answer is' (repeatable)",
  )
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  return p


def _line_policy(path: Path, n: int, spec, own: bool, teacher: str | None) -> str:
  """A prompts-file line's policy, checked here so that an error names the file and the line."""
  if not isinstance(spec, str):
    raise PolicyError(f'{path}:{n}: "policy" must be a string like "step:1", got {json.dumps(spec)}')
  where = f"{path}:{n}: " if own else "--policy: "
  try:
    policy = parse_policy(spec)
  except PolicyError as e:
    raise PolicyError(f"{where}{e}") from None
  if teacher is None and policy.needs_teacher:
    raise PolicyError(
      f"{where}policy {spec!r} needs a teacher; pass --teacher DIR (or use a student-only policy)"
    )
  return spec


def _read_prompts(args) -> tuple[list[str], list[str]]:
  if args.prompt is not None:
    return [args.prompt], [args.policy]
  path = Path(args.prompts)
  if not path.is_file():
    raise DecodeInputError(f"--prompts file {path} does not exist")
  texts, policies = [], []
  for n, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
    except json.JSONDecodeError as e:
      raise DecodeInputError(f"{path}:{n}: not valid JSON ({e.msg})")
    if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str):
      raise DecodeInputError(f'{path}:{n}: each line needs a string field "prompt"')
    spec = rec.get("policy", args.policy)
    texts.append(rec["prompt"])
    policies.append(_line_policy(path, n, spec, "policy" in rec, args.teacher))
  if not texts:
    raise DecodeInputError(f"{path} holds no prompts")
  return texts, policies


def run(args) -> list[dict]:
  if args.max_new_tokens <= 0:
    raise DecodeInputError(f"--max-new-tokens must be positive, got {args.max_new_tokens}")
  if args.max_steps is not None and args.max_steps <= 0:
    raise DecodeInputError(f"--max-steps must be positive, got {args.max_steps}")
  if args.temperature < 0:
    raise DecodeInputError(f"--temperature must be >= 0, got {args.temperature}")
  texts, specs = _read_prompts(args)
  policies = [parse_policy(s) for s in specs]
  if args.teacher is None and any(p.needs_teacher for p in policies):
    bad = next(p.spec for p in policies if p.needs_teacher)
    raise PolicyError(f"policy {bad!r} needs a teacher; pass --teacher DIR (or use --policy never)")
  delimiter = codecs.decode(args.step_delimiter, "unicode_escape")
  stop = StopRule(
    texts=tuple(codecs.decode(t, "unicode_escape") for t in args.stop),
    answer_markers=tuple(args.answer_marker),
  )
  served = None
  if is_url(args.teacher):  # a server that is down is an error before any model is loaded
    served = ServedTeacher(
      args.teacher,
      model=args.teacher_model,
      api_key_env=args.teacher_api_key_env,
      timeout_s=args.teacher_timeout,
      retries=args.teacher_retries,
      api=args.teacher_api,
      chat_template=args.teacher_chat_template,
    )

  from decode.bridge.pairing import make_decoder  # heavy imports only after the arguments are known good
  from model.hf_import import load_model

  student = load_model(args.student, dtype=args.dtype, name="student")
  teacher = served or (load_model(args.teacher, dtype=args.dtype, name="teacher") if args.teacher else None)
  decoder = make_decoder(student, teacher, step_delimiter=delimiter, stop=stop)
  prompt_ids = decoder.encode(texts)
  results = decoder.generate(
    DecodeRequest(
      prompt_ids,
      policies,
      max_new_tokens=args.max_new_tokens,
      max_steps=args.max_steps,
      texts=texts,
      sampling=Sampling(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=[args.seed + i for i in range(len(texts))],
      ),
    )
  )
  return [{"prompt": t, **r.to_json()} for t, r in zip(texts, results)]


def main(argv=None) -> int:
  parser = _parser()
  add_verbose_flag(parser)
  args = parser.parse_args(argv)
  quiet_startup_logs(args.verbose)
  rows = report_user_errors(lambda: run(args))
  for row in rows:
    print(json.dumps(row))
  return 0


if __name__ == "__main__":
  sys.exit(main())
