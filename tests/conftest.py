"""Shared fixtures: one tiny model pair per session, loaded once.

Every module that needs a student/teacher pair uses these, so the pair is built and loaded once,
and decoders of the same pair and shapes reuse one compiled loop across modules (the loop's jit is
shared by all decoders; its cache is keyed by model configs and shapes). The guided loop tests'
`delimiter` and `decoder` (tests/guided_cases.py) are here too, as they span four modules.
"""

import atexit
import os
import shutil
import tempfile

import guided_cases
import jax
import pytest
import tiny_models

from model.hf_import import load_model

# One persistent XLA compilation cache per test run for the processes tests start (CLI runs, resumed
# and grown sweeps, two-process runs: they inherit os.environ and compile the same loop again and
# again), shared by both xdist workers. Off in the test processes themselves: their tests count the
# compilations a decoder causes (decode.core.loop.counting_compiles), which a cache hit would hide.
jax.config.update("jax_enable_compilation_cache", False)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the first process of the run (xdist's controller)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="test-jax-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def pair_dir(tmp_path_factory):
  """Directories s/ and t/: a tiny random student and teacher with one tokenizer (save_pretrained)."""
  return tiny_models.make_model_pair(tmp_path_factory.mktemp("pair"), max_position_embeddings=1024)


@pytest.fixture(scope="session")
def pair(pair_dir):
  """(student, teacher) LanguageModels loaded through the real import path."""
  return load_model(pair_dir / "s"), load_model(pair_dir / "t")


@pytest.fixture(scope="module")
def delimiter(pair):
  """The content character that splits the pair's outputs into the most steps (guided loop tests)."""
  return guided_cases.busiest_delimiter(pair)


@pytest.fixture(scope="module")
def decoder(pair, delimiter):
  """The guided loop tests' decoder: small teacher and prefill chunks, so catch-up runs in pieces."""
  return guided_cases.chunked_decoder(pair, delimiter)
