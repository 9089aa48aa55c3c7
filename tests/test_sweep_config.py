"""The typed sweep config: parsed once from the ConfigDict, defaults from base_config() only."""

import dataclasses

import pytest
from ml_collections import ConfigDict

from configs import demo, gsm8k_cot
from configs.base import base_config
from experiments.sweep.config import SweepConfig, SweepConfigError, parse_config, student_config


def test_base_config_parses_with_unset_values_as_none():
  c = parse_config(base_config())
  assert isinstance(c, SweepConfig) and parse_config(c) is c  # a SweepConfig passes through
  assert c.limit is None and c.max_steps is None  # -1 = none
  assert c.teacher.path is None and c.teacher.url is None and c.teacher.model is None  # "" = unset
  assert c.task.path is None and c.exemplars.path is None
  assert c.exemplars.task == c.task.name == "synthetic"  # an unset pool task is the evaluated task's
  assert c.task.synthetic is not None and c.task.extra == ()
  b = base_config()
  assert (c.task.num_problems, c.teacher.timeout_s, c.teacher.retries) == (
    b.task.num_problems,
    b.teacher.timeout_s,
    b.teacher.retries,
  )
  assert c.distributed.initialization_timeout == b.distributed.initialization_timeout
  assert (c.mesh.data, c.mesh.model) == (b.mesh.data, b.mesh.model)
  with pytest.raises(dataclasses.FrozenInstanceError):
    c.batch_size = 3


def test_positive_limits_are_kept():
  b = base_config()
  b.limit, b.max_steps = 5, 3
  c = parse_config(b)
  assert (c.limit, c.max_steps) == (5, 3)
  b.limit, b.max_steps = 0, 0  # <= 0 is "none", as the sweep always read it
  assert (parse_config(b).limit, parse_config(b).max_steps) == (None, None)


def test_a_replaced_section_takes_base_defaults_for_the_keys_it_lacks():
  b = base_config()
  b.teacher = ConfigDict(dict(name="", path="/t"))  # as tests/sweep_configs.write_config_file writes it
  b.exemplars = ConfigDict(dict(path="/train.jsonl", k=2))
  b.task = ConfigDict(dict(name="gsm8k", path="/test.jsonl", split="test"))
  del b["distributed"]
  c = parse_config(b)
  base = base_config()
  assert c.teacher.name == base.teacher.name and c.teacher.path == "/t"
  assert (c.teacher.timeout_s, c.teacher.retries, c.teacher.api_key_env) == (
    base.teacher.timeout_s,
    base.teacher.retries,
    base.teacher.api_key_env,
  )
  assert c.exemplars.seed == base.exemplars.seed and c.exemplars.distinct_answers is True
  assert c.exemplars.task == "gsm8k"
  assert c.task.num_problems == base.task.num_problems and c.task.synthetic is None
  assert c.task.extra == (("split", "test"),)  # recorded in the manifest as given
  assert c.distributed == parse_config(base).distributed


def test_student_entries_parse_as_written():
  s = student_config(ConfigDict(dict(name="s", checkpoints="/run", path="/hf", steps="every:2")))
  assert (s.name, s.path, s.checkpoints, s.steps, s.checkpoint) == ("s", "/hf", "/run", "every:2", None)
  s = student_config(ConfigDict(dict(path="/m")))
  assert (s.name, s.checkpoints, s.steps) == (base_config().students[0].name, None, None)


def test_an_unknown_synthetic_key_is_one_clear_error():
  b = base_config()
  b.task.synthetic.no_such_knob = 1
  with pytest.raises(SweepConfigError, match=r"task\.synthetic has unknown key\(s\) 'no_such_knob'"):
    parse_config(b)


def test_shipped_configs_parse():
  for cfg in (demo.get_config(), demo.hard_step_config(2, "count"), gsm8k_cot.get_config()):
    c = parse_config(cfg)
    assert c.policies == tuple(cfg.policies) and len(c.students) == len(cfg.students)
  c = parse_config(demo.get_config())
  assert c.task.synthetic.number_range == (2, 9)  # lists and tuples alike become tuples
  assert c.students[-1].checkpoints == demo.CHECKPOINTS and c.students[-1].path is None
