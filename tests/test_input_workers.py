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


def test_lazy_flow_decodes_exactly_the_frames_asked_for():
  import zlib
  import numpy as np
  flow = np.random.default_rng(0).normal(size=(7, 5, 4, 2)).astype(np.float16)
  lazy = pipeline.ZlibFrames(zlib.compress(flow.tobytes()), (5, 4, 2), "float16")
  for frames in ([0], [6], [2, 3], [5, 1]):
    np.testing.assert_array_equal(lazy[np.asarray(frames)], flow[frames])
  with pytest.raises(IndexError, match="beyond the 7 stored frames"):
    lazy[np.asarray([7])]


def test_training_samples_from_the_lazy_source_equal_fully_decoded_ones(small_data_dir):
  import numpy as np
  c = config_lib.recipe("sosr_vdsr", "smoke")
  full = pipeline.get_source(c.data.name, "train", small_data_dir)
  lazy, lazy_flow = pipeline.train_source(c.data.name, "train", small_data_dir)
  assert lazy_flow is not None and isinstance(lazy[0]["mask"], bytes)  # neither mask nor flow decoded
  for sampler, clip_length in (("frame", 1), ("pair", 1), ("clip", 3)):
    c.data.sampler, c.data.clip_length = sampler, clip_length
    sample = pipeline.sample_patch(c.data, c.scale)
    for i in range(4):
      want = sample.random_map(full[i], np.random.default_rng(i))
      got = sample.random_map(lazy_flow.map(lazy[i]), np.random.default_rng(i))
      assert set(got) == set(want)
      for k in want:
        np.testing.assert_array_equal(got[k], want[k])
