"""data.worker_count = -1 (auto): grain worker processes from the host's cores per local accelerator."""

import jax
import pytest

from arsr_jax import config_lib
from arsr_jax.data import pipeline


@pytest.mark.parametrize("backend,devices,cores,want", [
    ("gpu", 8, 208, 16),  # GCP a3-highgpu-8g: 26 cores per H100, capped at 16
    ("gpu", 8, 32, 3),
    ("tpu", 4, 8, 1),
    ("gpu", 4, 4, 0),  # a core per device and nothing left: read in the main process
    ("cpu", 8, 208, 0),  # CPU devices are the host's cores: no workers
])
def test_auto_worker_count_follows_cores_per_device(monkeypatch, backend, devices, cores, want):
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  monkeypatch.setattr(jax, "local_device_count", lambda: devices)
  monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
  assert pipeline.resolve_worker_count(-1) == want
  assert pipeline.resolve_worker_count(3) == 3  # an explicit count is kept


def test_worker_count_default_is_auto_and_bad_values_are_named():
  c = config_lib.recipe("sosr_vdsr", "smoke")
  assert c.data.worker_count == pipeline.AUTO_WORKERS
  c.data.worker_count = -2
  with pytest.raises(ValueError, match="data.worker_count"):
    config_lib.validate(c)
