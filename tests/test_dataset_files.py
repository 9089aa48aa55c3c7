"""Tasks read as published (hub parquet, `datasets` save_to_disk) give the Problems their jsonl/json/xml give.

The files are written here with pyarrow in the layouts the hub and the `datasets` library use, so
nothing is downloaded and the `datasets` package is not needed.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from experiments.tasks.dataset_files import TaskFormatError
from experiments.tasks.datasets import load_task

GSM8K = [
  {"question": "Tom has 3 apples and buys 4 more. How many apples?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
  {"question": "A box holds 12 eggs. How many eggs in 2 boxes?", "answer": "12*2=<<12*2=24>>24\n#### 24"},
  {"question": "Sam had $1,000 and spent half. How much is left?", "answer": "1000/2=500\n#### 500.0"},
]
TRAIN = [{"question": "What is 1 plus 1?", "answer": "1+1=2\n#### 2"}]


def write_jsonl(path, records):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
  return path


def write_parquet(path, records):
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(pa.Table.from_pylist(records), path)
  return path


def save_to_disk(directory, records, split="test", shards=1):
  """The files `Dataset.save_to_disk` writes: Arrow IPC stream shards, state.json, dataset_info.json."""
  directory.mkdir(parents=True)
  features = {name: {"dtype": "string", "_type": "Value"} for name in records[0]}
  metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
  names = [f"data-{i:05d}-of-{shards:05d}.arrow" for i in range(shards)]
  per_shard = -(-len(records) // shards)
  for i, name in enumerate(names):
    table = pa.Table.from_pylist(records[i * per_shard : (i + 1) * per_shard]).replace_schema_metadata(
      metadata
    )
    with pa.OSFile(str(directory / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
      writer.write_table(table)
  state = {
    "_data_files": [{"filename": name} for name in names],
    "_fingerprint": "0123456789abcdef",
    "_format_columns": None,
    "_format_kwargs": {},
    "_format_type": None,
    "_output_all_columns": False,
    "_split": split,
  }
  (directory / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
  info = {"citation": "", "description": "", "features": features, "homepage": "", "license": ""}
  (directory / "dataset_info.json").write_text(json.dumps(info, indent=2))
  return directory


@pytest.fixture
def from_jsonl(tmp_path):
  """The GSM8K test split as the jsonl reader gives it (ids gsm8k/test/N)."""
  return load_task("gsm8k", write_jsonl(tmp_path / "jsonl" / "test.jsonl", GSM8K))


def test_gsm8k_hub_parquet_file_equals_jsonl(tmp_path, from_jsonl):
  path = write_parquet(tmp_path / "main" / "test-00000-of-00001.parquet", GSM8K)
  write_parquet(tmp_path / "main" / "train-00000-of-00001.parquet", TRAIN)
  assert load_task("gsm8k", path) == from_jsonl
  assert [p.answer for p in from_jsonl] == ["7", "24", "500"]
  assert load_task("gsm8k", tmp_path / "main", split="test") == from_jsonl
  assert load_task("gsm8k", tmp_path / "main", split="train")[0].problem_id == "gsm8k/train/0"


def test_parquet_directory_with_several_splits_names_them(tmp_path):
  write_parquet(tmp_path / "main" / "test-00000-of-00001.parquet", GSM8K)
  write_parquet(tmp_path / "main" / "train-00000-of-00001.parquet", TRAIN)
  with pytest.raises(TaskFormatError, match=r"holds several splits \(splits: test, train\); point the path"):
    load_task("gsm8k", tmp_path / "main")
  with pytest.raises(TaskFormatError, match=r"has no split 'validation' \(splits: test, train\)"):
    load_task("gsm8k", tmp_path / "main", split="validation")


def test_a_config_directory_above_the_splits_still_asks_for_one(tmp_path):
  write_parquet(tmp_path / "gsm8k" / "main" / "test-00000-of-00001.parquet", GSM8K)
  write_parquet(tmp_path / "gsm8k" / "main" / "train-00000-of-00001.parquet", TRAIN)
  with pytest.raises(TaskFormatError, match=r"main holds several splits \(splits: test, train\)"):
    load_task("gsm8k", tmp_path / "gsm8k")


def test_one_shard_brings_its_siblings_and_a_missing_shard_is_an_error(tmp_path, from_jsonl):
  first = write_parquet(tmp_path / "test-00000-of-00002.parquet", GSM8K[:2])
  second = write_parquet(tmp_path / "test-00001-of-00002.parquet", GSM8K[2:])
  assert load_task("gsm8k", first) == from_jsonl
  assert load_task("gsm8k", tmp_path) == from_jsonl
  second.unlink()
  with pytest.raises(TaskFormatError, match=r"split 'test' is missing shards test-00001-of-00002\.parquet"):
    load_task("gsm8k", first)


def test_hub_converted_layout_numbered_shards(tmp_path, from_jsonl):
  write_parquet(tmp_path / "main" / "test" / "0000.parquet", GSM8K[:1])
  write_parquet(tmp_path / "main" / "test" / "0001.parquet", GSM8K[1:])
  write_parquet(tmp_path / "main" / "train" / "0000.parquet", TRAIN)
  assert load_task("gsm8k", tmp_path / "main" / "test") == from_jsonl
  assert load_task("gsm8k", tmp_path / "main" / "test" / "0000.parquet") == from_jsonl
  assert load_task("gsm8k", tmp_path / "main", split="test") == from_jsonl


def test_save_to_disk_dataset_equals_jsonl(tmp_path, from_jsonl):
  saved = save_to_disk(tmp_path / "gsm8k_test", GSM8K, shards=2)
  assert load_task("gsm8k", saved) == from_jsonl
  synthetic = load_task("synthetic", saved)
  assert [p.problem_id for p in synthetic] == ["synthetic/test/0", "synthetic/test/1", "synthetic/test/2"]


def test_save_to_disk_dataset_dict_takes_the_split_from_path_or_option(tmp_path, from_jsonl):
  root = tmp_path / "gsm8k"
  save_to_disk(root / "train", TRAIN, split="train")
  save_to_disk(root / "test", GSM8K, split="test")
  (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
  assert load_task("gsm8k", root / "test") == from_jsonl
  assert load_task("gsm8k", root, split="test") == from_jsonl
  with pytest.raises(TaskFormatError) as error:
    load_task("gsm8k", root)
  message = str(error.value)
  assert "splits: test, train" in message and f"e.g. {root / 'test'}" in message and "split='test'" in message


def test_save_to_disk_errors_name_the_fix(tmp_path):
  saved = save_to_disk(tmp_path / "ds", GSM8K)
  with pytest.raises(
    TaskFormatError, match=r"one shard of a `datasets` save_to_disk directory; set the path"
  ):
    load_task("gsm8k", saved / "data-00000-of-00001.arrow")
  lone = tmp_path / "gsm8k-test.arrow"
  lone.write_bytes((saved / "data-00000-of-00001.arrow").read_bytes())
  with pytest.raises(
    TaskFormatError, match=r"a lone \.arrow file is not read; save the dataset with save_to_disk"
  ):
    load_task("gsm8k", lone)
  (saved / "data-00000-of-00001.arrow").unlink()
  with pytest.raises(
    TaskFormatError, match=r"state\.json lists missing data files data-00000-of-00001\.arrow"
  ):
    load_task("gsm8k", saved)
  (saved / "state.json").write_text("{}")
  with pytest.raises(TaskFormatError, match=r"no '_data_files' list"):
    load_task("gsm8k", saved)


def test_svamp_parquet_mirror_equals_json(tmp_path):
  records = [
    {"ID": "chal-1", "Body": "Dan has 5 pens and buys 3.", "Question": "How many pens?", "Answer": 8.0},
    {"ID": "chal-2", "Body": "A jar has 9 sweets.", "Question": "How many if 4 are eaten?", "Answer": 5.0},
  ]
  path = tmp_path / "svamp.json"
  path.write_text(json.dumps(records))
  mirror = [{**r, "Equation": "( 5.0 + 3.0 )", "Type": "Addition", "question_concat": "x"} for r in records]
  parquet = write_parquet(tmp_path / "data" / "svamp-00000-of-00001.parquet", mirror)
  assert load_task("svamp", parquet) == load_task("svamp", path)


def test_asdiv_parquet_mirror_equals_xml(tmp_path):
  rows = [
    ("Seven red apples and two green.", "How many apples?", "9 (apples)"),
    ("Sun.", "Next day?", "Sunday"),
  ]
  problems = "".join(
    f"<Problem><Body>{b}</Body><Question>{q}</Question><Answer>{a}</Answer></Problem>" for b, q, a in rows
  )
  xml = tmp_path / "asdiv.xml"
  xml.write_text(
    f"<Machine-Reading-Corpus-File><ProblemSet>{problems}</ProblemSet></Machine-Reading-Corpus-File>"
  )
  mirror = [
    {"body": b, "question": q, "solution_type": "Addition", "answer": a, "formula": "7+2=9"}
    for b, q, a in rows
  ]
  parquet = write_parquet(tmp_path / "asdiv.parquet", mirror)
  with pytest.raises(TaskFormatError, match=r"asdiv\.parquet: row 1: answer 'Sunday' is not a number"):
    load_task("asdiv", parquet)
  expected = load_task("asdiv", xml, skip_non_numeric=True)
  assert [p.problem_id for p in expected] == ["asdiv/asdiv/0"]
  assert load_task("asdiv", parquet, skip_non_numeric=True) == expected


def test_multiarith_parquet_original_and_mirror_columns_equal_json(tmp_path):
  records = [{"sQuestion": "Debby had 32 and ate 5. How many left?", "lSolutions": [27.0]}]
  path = tmp_path / "multiarith.json"
  path.write_text(json.dumps(records))
  original = write_parquet(tmp_path / "original" / "multiarith.parquet", records)
  mirror = write_parquet(
    tmp_path / "mirror" / "multiarith.parquet", [{"question": records[0]["sQuestion"], "final_ans": "27"}]
  )
  expected = load_task("multiarith", path)
  assert expected[0].answer == "27"
  assert load_task("multiarith", original) == load_task("multiarith", mirror) == expected


def test_bad_table_input_gets_one_clear_line(tmp_path):
  wrong = write_parquet(tmp_path / "wrong" / "test.parquet", [{"problem": "Q?", "solution": "#### 1"}])
  with pytest.raises(
    TaskFormatError, match=r"no column for 'question' \(looked for question; columns: problem, solution\)"
  ):
    load_task("gsm8k", wrong)
  bad_row = write_parquet(
    tmp_path / "bad" / "test.parquet", [*GSM8K[:1], {"question": "Q?", "answer": "no final line"}]
  )
  with pytest.raises(TaskFormatError, match=r"test\.parquet: row 1: answer has no final '#### N' line"):
    load_task("gsm8k", bad_row)
  corrupt = tmp_path / "corrupt.parquet"
  corrupt.write_bytes(b"not parquet at all")
  with pytest.raises(TaskFormatError, match=r"corrupt\.parquet: not a readable parquet file"):
    load_task("gsm8k", corrupt)
  (tmp_path / "empty").mkdir()
  with pytest.raises(TaskFormatError, match=r"empty: no task data here; expected \*\.parquet files"):
    load_task("gsm8k", tmp_path / "empty")
  xml = tmp_path / "gsm8k.xml"
  xml.write_text("<x/>")
  with pytest.raises(
    TaskFormatError, match=r"gsm8k is read from \.jsonl/\.json, \.parquet or a dataset directory"
  ):
    load_task("gsm8k", xml)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_task("gsm8k", tmp_path / "missing.parquet")
