"""Loaders for the four datasets, on small fixture files written in each format."""

import json

import pytest

from experiments.tasks.datasets import (
  Problem,
  TaskFormatError,
  UnknownTaskError,
  load_asdiv,
  load_gsm8k,
  load_multiarith,
  load_svamp,
  load_task,
)

GSM8K_RECORDS = [
  {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as "
    "many clips in May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
  },
  {
    "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes "
    "of babysitting. How much did she earn?",
    "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
    "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 1,000.0",
  },
]


def write_jsonl(path, records):
  path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
  return path


def test_load_gsm8k_fields_and_ids(tmp_path):
  path = write_jsonl(tmp_path / "test.jsonl", GSM8K_RECORDS)
  problems = load_gsm8k(path)
  assert [p.problem_id for p in problems] == ["gsm8k/test/0", "gsm8k/test/1"]
  first = problems[0]
  assert first == Problem(
    problem_id="gsm8k/test/0",
    question=GSM8K_RECORDS[0]["question"],
    answer="72",
    rationale="Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.",
    source="gsm8k",
  )
  assert problems[1].answer == "1000"
  assert load_gsm8k(path, split="train")[0].problem_id == "gsm8k/train/0"


def test_load_gsm8k_allows_blank_lines_and_keeps_ids_dense(tmp_path):
  path = tmp_path / "train.jsonl"
  path.write_text(
    json.dumps(GSM8K_RECORDS[0]) + "\n\n" + json.dumps(GSM8K_RECORDS[1]) + "\n\n",
    encoding="utf-8",
  )
  assert [p.problem_id for p in load_gsm8k(path)] == ["gsm8k/train/0", "gsm8k/train/1"]


@pytest.mark.parametrize(
  "bad_line, message",
  [
    ('{"question": "Q?", "answer": "x\\n#### 4"', "invalid JSON"),
    ('{"question": "Q?"}', "missing field 'answer'"),
    ('{"question": "Q?", "answer": "no final line"}', "no final '#### N' line"),
    ('{"question": "Q?", "answer": "x\\n#### four"}', "is not a number"),
    ('["not", "an", "object"]', "expected a JSON object"),
  ],
)
def test_load_gsm8k_malformed_record_names_file_and_line(tmp_path, bad_line, message):
  path = tmp_path / "test.jsonl"
  path.write_text(json.dumps(GSM8K_RECORDS[0]) + "\n" + bad_line + "\n", encoding="utf-8")
  with pytest.raises(TaskFormatError) as error:
    load_gsm8k(path)
  assert f"{path}:2" in str(error.value)
  assert message in str(error.value)


def test_load_svamp(tmp_path):
  records = [
    {
      "ID": "chal-1",
      "Body": "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack",
      "Question": "How much do you have to pay to buy each pack?",
      "Equation": "( 76.0 - 25.0 )",
      "Answer": 51.0,
    },
    {"Body": "Dan has 5 pens.", "Question": "How many pens does Dan have?", "Answer": "5"},
  ]
  path = tmp_path / "SVAMP.json"
  path.write_text(json.dumps(records), encoding="utf-8")
  problems = load_svamp(path, split="test")
  assert [p.problem_id for p in problems] == ["svamp/test/chal-1", "svamp/test/1"]
  assert problems[0].question == records[0]["Body"] + " " + records[0]["Question"]
  assert problems[0].answer == "51"
  assert problems[0].rationale is None and problems[0].source == "svamp"
  assert load_svamp(path)[0].problem_id == "svamp/svamp/chal-1"


def test_load_svamp_malformed_records(tmp_path):
  path = tmp_path / "svamp.json"
  path.write_text(json.dumps([{"Body": "b", "Question": "q", "Answer": 1}, {"Body": "b"}]))
  with pytest.raises(TaskFormatError, match=r"svamp\.json: record 1: missing field 'Question'"):
    load_svamp(path)
  path.write_text(json.dumps([{"Body": "b", "Question": "q", "Answer": "many"}]))
  with pytest.raises(TaskFormatError, match=r"record 0: answer 'many' is not a number"):
    load_svamp(path)
  path.write_text('[{"Body": "b",\n "Question": }]')
  with pytest.raises(TaskFormatError, match=r"svamp\.json:2:\d+: invalid JSON"):
    load_svamp(path)
  path.write_text(json.dumps({"Body": "b"}))
  with pytest.raises(TaskFormatError, match="expected a JSON list"):
    load_svamp(path)


def test_load_svamp_duplicate_ids_are_an_error(tmp_path):
  record = {"ID": "x", "Body": "b", "Question": "q", "Answer": 1}
  path = tmp_path / "svamp.json"
  path.write_text(json.dumps([record, record]))
  with pytest.raises(TaskFormatError, match="duplicate problem id 'svamp/svamp/x'"):
    load_svamp(path)


ASDIV_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Machine-Reading-Corpus-File>
  <ProblemSet>
    <Problem ID="nluds-0001" Grade="1" Source="http://www.k5learning.com">
      <Body>Seven red apples and two green apples are in the basket.</Body>
      <Question>How many apples are in the basket?</Question>
      <Solution-Type>Addition</Solution-Type>
      <Answer>9 (apples)</Answer>
      <Formula>7+2=9</Formula>
    </Problem>
    <Problem ID="nluds-0002" Grade="1" Source="http://www.k5learning.com">
      <Body>Ellen has 4 &amp; a half pies.</Body>
      <Question>How many pies does Ellen have?</Question>
      <Solution-Type>Common-Division</Solution-Type>
      <Answer>4.5 (pies)</Answer>
      <Formula>4.5</Formula>
    </Problem>
    <Problem ID="nluds-0003" Grade="2" Source="x">
      <Body>Which day comes after Saturday?</Body>
      <Question>Name it.</Question>
      <Solution-Type>Other</Solution-Type>
      <Answer>Sunday</Answer>
      <Formula>N/A</Formula>
    </Problem>
  </ProblemSet>
</Machine-Reading-Corpus-File>
"""


def test_load_asdiv_strips_units_and_names_bad_line(tmp_path):
  path = tmp_path / "ASDiv.xml"
  path.write_text(ASDIV_XML, encoding="utf-8")
  with pytest.raises(TaskFormatError) as error:
    load_asdiv(path)
  assert f"{path}:18: Problem nluds-0003" in str(error.value)
  assert "'Sunday' is not a number" in str(error.value)

  problems = load_asdiv(path, split="all", skip_non_numeric=True)
  assert [p.problem_id for p in problems] == ["asdiv/all/nluds-0001", "asdiv/all/nluds-0002"]
  assert problems[0].question == (
    "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
  )
  assert [p.answer for p in problems] == ["9", "4.5"]
  assert problems[1].question.startswith("Ellen has 4 & a half pies.")


def test_load_asdiv_invalid_xml_and_missing_field(tmp_path):
  path = tmp_path / "asdiv.xml"
  path.write_text("<Machine-Reading-Corpus-File>\n<ProblemSet>\n<Problem ID='a'>\n</ProblemSet>")
  with pytest.raises(TaskFormatError, match=r"asdiv\.xml:4:\d+: invalid XML"):
    load_asdiv(path)
  path.write_text(
    "<Machine-Reading-Corpus-File><ProblemSet>\n<Problem ID='a'><Body>b</Body>"
    "<Answer>3</Answer></Problem></ProblemSet></Machine-Reading-Corpus-File>"
  )
  with pytest.raises(TaskFormatError, match=r"asdiv\.xml:2: Problem a: missing field 'Question'"):
    load_asdiv(path)


def test_load_multiarith(tmp_path):
  records = [
    {
      "iIndex": 7,
      "sQuestion": " For Halloween Debby and her sister combined the candy they received. "
      "Debby had 32 pieces of candy while her sister had 42. If they ate 35 pieces the "
      "first night, how many pieces do they have left? ",
      "lEquations": ["X=((32.0+42.0)-35.0)"],
      "lSolutions": [39.0],
    },
    {"iIndex": 9, "sQuestion": "Q?", "lSolutions": [2]},
  ]
  path = tmp_path / "MultiArith.json"
  path.write_text(json.dumps(records), encoding="utf-8")
  problems = load_multiarith(path, split="test")
  assert [p.problem_id for p in problems] == ["multiarith/test/7", "multiarith/test/9"]
  assert problems[0].question.startswith("For Halloween") and problems[0].question.endswith("left?")
  assert [p.answer for p in problems] == ["39", "2"]
  path.write_text(json.dumps([{"iIndex": 1, "sQuestion": "Q?", "lSolutions": [1, 2]}]))
  with pytest.raises(TaskFormatError, match="record 0: 'lSolutions' must be a list with exactly one"):
    load_multiarith(path)


def test_load_task_registry(tmp_path):
  path = write_jsonl(tmp_path / "test.jsonl", GSM8K_RECORDS)
  assert load_task("gsm8k", path) == load_gsm8k(path)
  synthetic = load_task("synthetic", path, split="test")
  assert synthetic[0].problem_id == "synthetic/test/0" and synthetic[0].source == "synthetic"
  with pytest.raises(UnknownTaskError, match="unknown task 'mawps'; choose one of"):
    load_task("mawps", path)
