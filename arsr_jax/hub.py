"""Published weight files fetched on first use into a local cache, as torch.hub does.

``fetch(url, sha256)`` returns the path of the file named by the URL's last component,
looking in order at:
  1. the cache: ``$ARSR_JAX_CACHE`` if set, else ``$XDG_CACHE_HOME/arsr_jax/weights``
     (``~/.cache/arsr_jax/weights``);
  2. torch.hub's checkpoints (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch``), where
     torchvision / BasicSR users already have the file (read only, never written);
  3. a download into the cache, with a progress bar on stderr.
A download goes to a temporary file in the cache folder and is renamed to its name only after its
length and sha256 match; an HTTP error, an unreachable server, a connection cut mid-file or a
wrong hash raises ``DownloadError`` (one line: URL, what happened) and leaves nothing in the cache.
Files found in 1 or 2 must have the published size (``size``), a cheap check against truncation.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import TextIO

from arsr_jax import writers

CACHE_ENV = "ARSR_JAX_CACHE"
CHUNK = 1 << 20  # bytes per read
MIB = 1 << 20


class DownloadError(OSError):
  """A weight file that could not be fetched; nothing was written to the cache."""


def cache_dir() -> str:
  """``$ARSR_JAX_CACHE``, else ``$XDG_CACHE_HOME/arsr_jax/weights`` (``~/.cache/arsr_jax/weights``)."""
  if os.environ.get(CACHE_ENV):
    return os.path.expanduser(os.environ[CACHE_ENV])
  return os.path.join(_xdg_cache(), "arsr_jax", "weights")


def torch_hub_dir() -> str:
  """torch.hub's checkpoint folder: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
  home = os.path.expanduser(os.environ.get("TORCH_HOME") or os.path.join(_xdg_cache(), "torch"))
  return os.path.join(home, "hub", "checkpoints")


def _xdg_cache() -> str:
  return os.path.expanduser(os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"))


def filename(url: str) -> str:
  return os.path.basename(urllib.parse.urlparse(url).path)


def cache_path(url: str) -> str:
  """Where ``fetch`` keeps the file of ``url``."""
  return os.path.join(cache_dir(), filename(url))


def find(url: str, size: int | None = None) -> str | None:
  """The cached copy of ``url`` (our cache, then torch.hub's), or None; a copy whose size is not
  ``size`` raises ``DownloadError`` naming it (a truncated or foreign file)."""
  for path in (cache_path(url), os.path.join(torch_hub_dir(), filename(url))):
    if os.path.isfile(path):
      if size is not None and (have := os.path.getsize(path)) != size:
        raise DownloadError(f"{path} has {have} bytes, the published {filename(url)} has {size}; "
                            "delete it to download it again")
      return path
  return None


def fetch(url: str, sha256: str, size: int | None = None, timeout: float = 60.0,
          stream: TextIO | None = None) -> str:
  """Path of ``url``'s file: a cached copy (``find``), else downloaded into ``cache_path(url)``.

  ``sha256``: the published hex digest, checked before the file enters the cache; ``size``: its
  length in bytes (checked for cached copies too); ``timeout``: seconds per connect / read;
  ``stream``: where the progress bar goes (stderr).
  """
  return find(url, size) or download(url, cache_path(url), sha256, timeout, stream)


def download(url: str, dest: str, sha256: str, timeout: float = 60.0, stream: TextIO | None = None) -> str:
  """Downloads ``url`` to ``dest`` through a temporary file renamed once complete with ``sha256``."""
  folder = os.path.dirname(dest) or "."
  try:
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(dest)}.", suffix=".part")
  except OSError as e:
    raise DownloadError(f"cannot write the weights cache {folder}: {e.strerror or e}") from e
  try:
    with os.fdopen(fd, "wb") as out:
      digest = _copy(url, out, timeout, stream)
    if digest != sha256.lower():
      raise DownloadError(f"{url}: sha256 {digest} differs from the published {sha256}; nothing was cached")
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return dest


def _copy(url: str, out, timeout: float, stream: TextIO | None) -> str:
  """Streams ``url`` into ``out``; returns the sha256 hex digest of what was received."""
  try:
    response = urllib.request.urlopen(url, timeout=timeout)
  except urllib.error.HTTPError as e:
    raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
  except (urllib.error.URLError, OSError) as e:
    raise DownloadError(f"cannot reach {url}: {getattr(e, 'reason', None) or e}") from e
  digest, got = hashlib.sha256(), 0
  with response:
    total = int(response.headers.get("Content-Length") or 0)
    bar = writers.ProgressBar(-(-total // MIB), desc=f"downloading {filename(url)}", unit="MiB", stream=stream)
    try:
      while chunk := response.read(CHUNK):
        out.write(chunk)
        digest.update(chunk)
        got += len(chunk)
        bar.update(got // MIB - bar.count)
    except (OSError, http.client.HTTPException) as e:  # reset, timeout, a broken chunked encoding
      raise DownloadError(f"{url}: connection lost after {got} of {total or '?'} bytes ({e}); "
                          "nothing was cached") from e
    finally:
      bar.update(-(-got // MIB) - bar.count)
      bar.close()
  if total and got != total:
    raise DownloadError(f"{url}: connection closed after {got} of {total} bytes; nothing was cached")
  return digest.hexdigest()
