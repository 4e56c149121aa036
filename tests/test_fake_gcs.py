"""The offline gs:// backend (tests/fake_gcs.py) against every client a workdir on GCS goes through."""

import json
import os
import struct
import subprocess
import sys
import textwrap

import pytest

from fake_gcs import fake_gcs  # noqa: F401  pylint: disable=unused-import


def test_server_is_local_and_env_is_wired(fake_gcs):
  assert fake_gcs == "gs://arsr-test"
  assert fake_gcs.endpoint.startswith("http://127.0.0.1:")
  assert fake_gcs.server.startup_s is not None and fake_gcs.server.startup_s < 20
  for name in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL"):
    assert os.environ[name] == fake_gcs.endpoint
  assert fake_gcs.list_objects() == []


def test_epath_round_trip(fake_gcs):
  from etils import epath
  root = epath.Path(fake_gcs) / "x"
  assert type(root._backend).__name__ == "_FileSystemSpecBackend"  # pylint: disable=protected-access
  root.mkdir(parents=True, exist_ok=True)  # a no-op on GCS: prefixes exist once objects do
  (root / "a.txt").write_text("hello")
  (root / "b.bin").write_bytes(b"\x00\x01\xff")
  with (root / "c.txt").open("w") as f:
    f.write("via open()")
  assert (root / "a.txt").read_text() == "hello"
  assert (root / "b.bin").read_bytes() == b"\x00\x01\xff"
  with (root / "c.txt").open("r") as f:
    assert f.read() == "via open()"
  assert root.exists() and root.is_dir() and (root / "a.txt").is_file()
  assert not (root / "missing").exists()
  assert sorted(p.name for p in root.iterdir()) == ["a.txt", "b.bin", "c.txt"]
  assert [p.name for p in root.glob("*.txt")] == ["a.txt", "c.txt"]
  (root / "sub" / "deep.txt").write_text("d")
  assert sorted(p.name for p in root.iterdir()) == ["a.txt", "b.bin", "c.txt", "sub"]
  (root / "a.txt").rename(root / "renamed.txt")
  assert not (root / "a.txt").exists() and (root / "renamed.txt").read_text() == "hello"
  (root / "b.bin").replace(root / "renamed.txt")  # overwrite
  assert (root / "renamed.txt").read_bytes() == b"\x00\x01\xff"
  (root / "c.txt").unlink()
  assert sorted(fake_gcs.list_objects("x/")) == ["x/renamed.txt", "x/sub/deep.txt"]
  root.rmtree()
  assert not root.exists() and fake_gcs.list_objects("x/") == []


def test_gcs_has_no_empty_directories(fake_gcs):
  """Real GCS semantics (what the training loop must tolerate): mkdir of a prefix creates nothing."""
  from etils import epath
  d = epath.Path(fake_gcs) / "run" / "fresh"
  d.mkdir(parents=True, exist_ok=True)
  assert not d.exists()
  (d / "f").write_text("1")
  assert d.exists() and d.is_dir()


def _write_json_atomic(path, obj):
  """The write-tmp-then-rename pattern used for results/config JSON."""
  tmp = path.parent / f".{path.name}.tmp"
  tmp.write_text(json.dumps(obj, sort_keys=True))
  tmp.replace(path)


def test_atomic_json_write(fake_gcs):
  from etils import epath
  path = epath.Path(fake_gcs) / "run" / "results.json"
  _write_json_atomic(path, {"psnr": 20.5, "step": 1})
  _write_json_atomic(path, {"psnr": 21.0, "step": 2})  # replaces an existing object
  assert json.loads(path.read_text()) == {"psnr": 21.0, "step": 2}
  assert fake_gcs.list_objects("run/") == ["run/results.json"]  # no tmp file left behind


def test_tensorstore_gcs_kvstore(fake_gcs):
  """TensorStore's own C++ gcs driver, including generation preconditions."""
  import numpy as np
  import tensorstore as ts
  spec = {"driver": "zarr", "kvstore": f"{fake_gcs}/ts/arr"}
  arr = ts.open(spec, create=True, dtype=ts.float32, shape=[4, 3]).result()
  arr.write(np.arange(12, dtype=np.float32).reshape(4, 3)).result()
  np.testing.assert_array_equal(ts.open(spec).result().read().result(), np.arange(12).reshape(4, 3))
  with pytest.raises(ValueError, match="ALREADY_EXISTS"):  # ifGenerationMatch=0 -> HTTP 412
    ts.open(spec, create=True, dtype=ts.float32, shape=[4, 3]).result()
  assert "ts/arr/.zarray" in fake_gcs.list_objects("ts/")


def _orbax_args(ocp, state, meta):
  return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))


def test_orbax_checkpoint_manager_round_trip(fake_gcs):
  import jax
  import jax.numpy as jnp
  import numpy as np
  import orbax.checkpoint as ocp
  from etils import epath

  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  sharded = jax.device_put(jnp.arange(len(jax.devices()) * 2, dtype=jnp.float32),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
  state = {"params": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3, jnp.int32)},
           "sharded": sharded, "step": jnp.asarray(0)}
  directory = f"{fake_gcs}/run/checkpoints"
  options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=True, create=True)

  with ocp.CheckpointManager(directory, options=options) as mngr:
    for step in range(3):
      step_state = jax.tree.map(lambda x, s=step: x + s, state)
      assert mngr.save(step, args=_orbax_args(ocp, step_state, {"step": step, "lr": 0.1}))
    mngr.wait_until_finished()
    assert mngr.latest_step() == 2
    assert mngr.all_steps() == [1, 2]  # max_to_keep=2 deleted step 0

  objects = fake_gcs.list_objects("run/checkpoints/")
  assert not any(name.startswith("run/checkpoints/0/") for name in objects)
  # Orbax took its GCS code path (commit marker instead of a tmp-dir rename) and TensorStore wrote
  # the array data (OCDBT) through the gcs kvstore.
  assert "run/checkpoints/2/commit_success.txt" in objects
  assert any(name.startswith("run/checkpoints/2/state/") and "ocdbt" in name for name in objects)
  assert sorted(p.name for p in epath.Path(directory).iterdir()) == ["1", "2"]

  # A fresh manager (as after a restart) sees the same steps and restores with the target shardings.
  with ocp.CheckpointManager(directory, options=options) as mngr:
    assert mngr.latest_step() == 2 and mngr.all_steps() == [1, 2]
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = mngr.restore(mngr.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  assert restored["meta"] == {"step": 2, "lr": 0.1}
  expected = jax.tree.map(lambda x: np.asarray(x) + 2, state)
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, restored["state"]), expected)
  assert restored["state"]["sharded"].sharding == sharded.sharding


def _read_tfrecord_scalars(data: bytes):
  from tensorboardX.proto import event_pb2
  out, off = [], 0
  while off < len(data):
    (n,) = struct.unpack("<Q", data[off:off + 8])
    event = event_pb2.Event.FromString(data[off + 12:off + 12 + n])
    off += 12 + n + 4
    out += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
  return out


def test_tensorboardx_writes_to_gcs(fake_gcs):
  pytest.importorskip("google.cloud.storage", reason="tensorboardX gs:// needs google-cloud-storage")
  from etils import epath
  from tensorboardX import SummaryWriter
  logdir = f"{fake_gcs}/run/tb"
  writer = SummaryWriter(logdir=logdir)
  try:
    for step in range(3):
      writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.flush()
    writer.add_scalar("train/loss", 0.125, 3)
  finally:
    writer.close()
  (event_file,) = epath.Path(logdir).glob("events.out.tfevents.*")
  scalars = _read_tfrecord_scalars(event_file.read_bytes())
  assert [(s, t) for s, t, _ in scalars] == [(0, "train/loss"), (1, "train/loss"), (2, "train/loss"),
                                             (3, "train/loss")]
  assert [v for _, _, v in scalars] == pytest.approx([1.0, 0.5, 1 / 3, 0.125])


def test_subprocess_inherits_wiring(fake_gcs):
  """A child process (e.g. a smoke training run) reaches the emulator through the environment only."""
  child = textwrap.dedent(f"""
      import json, numpy as np, tensorstore as ts
      from etils import epath
      root = epath.Path("{fake_gcs}") / "child"
      (root / "config.json").write_text(json.dumps({{"ok": True}}))
      kv = ts.KvStore.open("{fake_gcs}/child/kv/").result()
      kv.write("k", b"v").result()
      print(json.loads((root / "config.json").read_text())["ok"], kv.read("k").result().value)
  """)
  result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  assert result.stdout.split()[-2:] == ["True", "b'v'"]
  assert fake_gcs.list_objects("child/") == ["child/config.json", "child/kv/k"]
