"""The one prompt/target format the demo models are trained on -- and must be prompted with.

A model trained from scratch only knows the layout it saw, so training (experiments.training.train,
experiments.training.distill) and evaluation (sweeps, greedy accuracy) all build text here:

    prompt:  build_prompt(problem, PROMPT_STYLE, exemplars=[])  ==  "Question: <q>\\nAnswer:"
    target:  " <step 1>\\n<step 2>\\n...\\n#### <N>"   (+ <eos> id, appended by the trainer)

i.e. the "cot" style with zero exemplars (no instruction line: it would cost ~60 tokens a row).
A sweep over the demo models uses prompt style PROMPT_STYLE with NUM_SHOTS exemplars.
"""

from __future__ import annotations

from experiments.tasks.answers import strip_after_answer
from experiments.tasks.datasets import Problem
from experiments.tasks.prompts import build_prompt, format_solution

PROMPT_STYLE = "cot"
NUM_SHOTS = 0
# Written into every exported model directory so a sweep can check it prompts correctly.
FORMAT_FILE = "prompt_format.json"
FORMAT_RECORD = {
  "prompt_style": PROMPT_STYLE,
  "num_shots": NUM_SHOTS,
  "layout": "Question: <q>\\nAnswer: <step per line>\\n#### <N><eos>",
}


def prompt_text(problem: Problem) -> str:
  """The prompt; the model's continuation is the solution (starts with a space)."""
  return build_prompt(problem, PROMPT_STYLE, [])


def target_text(problem: Problem) -> str:
  """Gold target after the prompt, from the problem's rationale and answer."""
  return " " + format_solution(problem, PROMPT_STYLE)


def target_from_completion(completion: str) -> str:
  """A generated completion as a training target: cut after its answer line, same spacing as gold."""
  return " " + strip_after_answer(completion).strip()
