"""Test setup: 8 simulated CPU devices (set before jax is imported) and shared fixtures."""

import os
import pathlib

# 8 simulated devices; the test suite is dominated by XLA compile time, which the lowest backend
# optimization level halves (the numerics are unchanged; only CPU code generation is simpler).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> str:
  """A TFDS data_dir holding synthetic_actions/small, built once per test session."""
  from tfds_builders import synthetic_actions
  data_dir = tmp_path_factory.mktemp("tfds")
  synthetic_actions.prepare("small", data_dir=str(data_dir))
  return str(data_dir)
