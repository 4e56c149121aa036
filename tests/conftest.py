"""Test setup: 8 simulated CPU devices (set before jax is imported) and shared fixtures."""

import atexit
import os
import pathlib
import shutil
import tempfile

# 8 simulated devices; the test suite is dominated by XLA compile time, which the lowest backend
# optimization level halves (the numerics are unchanged; only CPU code generation is simpler).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One XLA compilation cache per test session (unless one is given): many tests compile the same
# computations (the shipped model on the same frame sizes, the CLIs' subprocesses after the in-process
# tests), and the cache is keyed on the computation itself, so each compiles once. Subprocesses inherit
# the variables; a fresh folder keeps every session cold, as CI is.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="arsr_jax_test_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> str:
  """A TFDS data_dir holding synthetic_actions/small, built once per test session."""
  from tfds_builders import synthetic_actions
  data_dir = tmp_path_factory.mktemp("tfds")
  synthetic_actions.prepare("small", data_dir=str(data_dir))
  return str(data_dir)
