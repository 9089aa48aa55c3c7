"""Defaults shared by every sweep config; each configs/NAME.py starts from base_config()."""

from ml_collections import ConfigDict

from decode.host.options import DecodeOptions, ServedTeacherOptions


def base_config() -> ConfigDict:
  c = ConfigDict()
  c.output_dir = ""
  c.task = ConfigDict(
    dict(
      name="synthetic",
      path="",
      num_problems=200,
      synthetic=ConfigDict(dict(num_steps=(2, 4), num_distractors=(0, 2), number_range=(2, 20), seed=0)),
    )
  )
  c.limit = -1  # first N problems only (-1 = all)
  c.prompt_style = "cot"  # cot | subques | questcot | zero_shot | chat
  # few-shot pool: a train split; distinct_answers: no two exemplars share a final answer
  c.exemplars = ConfigDict(dict(path="", task="", k=0, seed=0, distinct_answers=True))
  c.students = [ConfigDict(dict(name="student", path="", checkpoint=None))]
  # path: a model directory; or url: an OpenAI-compatible server (http://HOST:PORT/v1), whose API key
  # is read from the environment variable api_key_env; model: its served name (default: its first).
  # A teacher with another tokenizer than the student's, or a server, writes through the text bridge.
  # api: "completions" (the text so far) or "chat" (one message: chat_template with {problem} and
  # {solution} filled; every bridged row records the hash of what its teacher was sent).
  served = ServedTeacherOptions()
  c.teacher = ConfigDict(
    dict(
      name="teacher",
      path="",
      url="",
      model="",
      api_key_env="OPENAI_API_KEY",
      timeout_s=served.timeout_s,
      retries=served.retries,
      api=served.api,
      chat_template=served.chat_template,
    )
  )
  # Calibrated triggers (`entropy:q=0.3`) take their threshold from the `never` rows, so list both.
  c.policies = ("never", "always", "step:1", "step:2", "step:3", "step:4")
  c.matched_random = False  # add random:P at each trigger policy's realized rate P (its matched control)
  # A grown sweep reuses the q= thresholds and matched rates recorded when first set (thresholds.json);
  # True sets them again from this run's rows and re-decodes the rows that used a changed one.
  c.recalibrate = False
  # The report covers the rows this config lists; True: every row the output dir holds (earlier
  # configs' problems, policies, seeds and students too).
  c.report_all_rows = False
  c.seeds = (0,)
  c.batch_size = 16
  c.max_new_tokens = 128
  c.max_steps = -1  # -1 = no step limit
  c.temperature = 0.0  # 0 = greedy (the paper's setting)
  c.top_k = 0
  c.top_p = 1.0
  c.step_delimiter = DecodeOptions.step_delimiter
  # Rows end where their answer is complete (the prompt style's stop rule: a new "Question:", the
  # blank line before another problem, the end of a "#### N" line); False: at EOS or max_new_tokens.
  c.stop_at_answer = True
  c.fork = True  # timing rows start from the student's own prefix
  c.shared_prefix = True  # the prompts' common prefix (few-shot exemplars) is prefilled once per model
  c.teacher_chunk = DecodeOptions.teacher_chunk  # tokens per forward of the teacher's catch-up
  # Teacher forwards on B/2, B/4, B/8 rows when fewer need it; 0 = off (smaller program).
  c.teacher_sub_batches = DecodeOptions.teacher_sub_batches
  c.dtype = "float32"
  # Scanned layers compile in time flat in depth; False unrolls them (per-layer params), which
  # decodes faster at batch 1 on XLA:CPU (see experiments/bench/BENCHMARKS.md). Rows are the same.
  c.scan_layers = True
  # data x model devices; -1 = the rest. scope "host": over this process's devices (each process runs
  # its share of the rows); "global": one mesh over every process's devices, so the teacher may be
  # split across hosts (every process runs every loop call and writes its share of the rows).
  c.mesh = ConfigDict(dict(data=-1, model=1, scope="host"))
  c.student_rules = "replicated"
  c.teacher_rules = "tensor_parallel"
  c.distributed = ConfigDict(
    dict(
      enabled=False,
      coordinator_address="",
      num_processes=1,
      process_id=0,
      cpu_collectives="",
      initialization_timeout=300,  # seconds to wait for the coordinator before a clear error
    )
  )
  return c
