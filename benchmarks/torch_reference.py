"""PyTorch reference for the JAX benchmarks: the same nets, losses and shapes, timed the same way.

  python benchmarks/torch_reference.py [--device auto|cuda|cpu] [--size paper|smoke]
                                       [--setups vdsr,rrdbnet,duf16] [--dtypes bf16,fp32] [--seconds 2]

Prints ONE JSON object. PyTorch is optional: without it, or without a GPU (``--device auto``),
the object says ``"available": false`` and why, and every ratio built on it is null. ``--device
cpu`` runs anyway (a smoke check of this script, not a reference).

Own PyTorch implementations (NCHW modules, channels_last memory on CUDA, cudnn.benchmark on):
  * train: VDSR 20 x 64 (bicubic x4 inside the net, global residual), MSE, batch 64 of 128 px HR;
    RRDBNet-23 (BasicSR's arch: 64 features, growth 32), L1, batch 16, 32 -> 128 px;
    VSR-DUF-16 (BatchNorm, 3D dense blocks, 5x5 dynamic filters + residual), Huber 0.01, batch 16
    of 7 x 32 px -> 128 px. A step is the full training step: zero_grad, forward, loss, backward,
    Adam (fused on CUDA);
  * infer: VDSR and RRDBNet at x4, 80x60 -> 320x240, ``--infer_batch`` frames per call,
    ``inference_mode``;
  * ``bf16``: ``torch.autocast(bfloat16)`` with float32 parameters (the JAX side's bf16 compute);
    ``fp32``: float32 (TF32 convolutions, PyTorch's default for cuDNN).
Timing as ``train_bench.py``: one fixed device-resident batch, 3 warm-up calls (smoke: 1),
synchronize, then as many calls as fill ``--seconds`` (3 to 1000; smoke: from 1), synchronize:
``step_s``, ``steps_per_s``, ``samples_per_s`` (frames/s for infer). Each setup reports ``error``
instead when it fails (e.g. out of memory). ``--size smoke``: tiny nets and batches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

SIZES = {  # setup: (batch, LR height, LR width, net options)
    "paper": {"vdsr": (64, 32, 32, dict(layers=20, features=64)),
              "rrdbnet": (16, 32, 32, dict(blocks=23, features=64, growth=32)),
              "duf16": (16, 32, 32, {}),
              "infer": (16, 60, 80, {})},
    "smoke": {"vdsr": (2, 8, 8, dict(layers=4, features=16)),
              "rrdbnet": (2, 8, 8, dict(blocks=1, features=16, growth=8)),
              "duf16": (1, 8, 8, {}),
              "infer": (2, 15, 20, {})},
}
SCALE = 4
WARMUP = {"paper": 3, "smoke": 1}  # warm-up calls (cuDNN autotuning happens there)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
  p.add_argument("--size", choices=sorted(SIZES), default="paper")
  p.add_argument("--setups", default="vdsr,rrdbnet,duf16,infer")
  p.add_argument("--dtypes", default="bf16,fp32")
  p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per setup")
  p.add_argument("--infer_batch", type=int, default=0, help="frames per inference call (0: the size's)")
  return p.parse_args(argv)


def build_nets(torch):
  """The reference nets as classes of this torch module (torch is imported lazily: optional)."""
  nn, F = torch.nn, torch.nn.functional

  class VDSR(nn.Module):
    def __init__(self, layers=20, features=64):
      super().__init__()
      chans = [3] + [features] * (layers - 1) + [3]
      self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:]))

    def forward(self, lr):
      base = F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)
      x = base
      for conv in self.convs[:-1]:
        x = F.relu(conv(x))
      return base + self.convs[-1](x)

  class RDB(nn.Module):
    def __init__(self, nf, gc):
      super().__init__()
      self.convs = nn.ModuleList(nn.Conv2d(nf + i * gc, nf if i == 4 else gc, 3, padding=1) for i in range(5))

    def forward(self, x):
      feats = [x]
      for conv in self.convs[:4]:
        feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
      return x + 0.2 * self.convs[4](torch.cat(feats, 1))

  class RRDB(nn.Module):
    def __init__(self, nf, gc):
      super().__init__()
      self.rdbs = nn.Sequential(RDB(nf, gc), RDB(nf, gc), RDB(nf, gc))

    def forward(self, x):
      return x + 0.2 * self.rdbs(x)

  class RRDBNet(nn.Module):  # BasicSR rrdbnet_arch.py at x4
    def __init__(self, blocks=23, features=64, growth=32):
      super().__init__()
      conv = lambda a, b: nn.Conv2d(a, b, 3, padding=1)  # noqa: E731
      self.conv_first, self.conv_body = conv(3, features), conv(features, features)
      self.body = nn.Sequential(*[RRDB(features, growth) for _ in range(blocks)])
      self.conv_up1, self.conv_up2 = conv(features, features), conv(features, features)
      self.conv_hr, self.conv_last = conv(features, features), conv(features, 3)

    def forward(self, x):
      feat = self.conv_first(x)
      feat = feat + self.conv_body(self.body(feat))
      feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
      feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
      return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

  class DUF16(nn.Module):  # arsr_jax/models/duf.py (= BasicSR duf_arch.py), 16 layers, x4
    def __init__(self, blocks=3, growth=32):
      super().__init__()
      self.conv1 = nn.Conv3d(3, 64, (1, 3, 3), padding=(0, 1, 1))
      self.blocks, f = nn.ModuleList(), 64
      for i in range(blocks + 3):
        pad_t = 0 if i >= blocks else 1
        self.blocks.append(nn.Sequential(
            nn.BatchNorm3d(f, eps=1e-3), nn.ReLU(), nn.Conv3d(f, f, 1),
            nn.BatchNorm3d(f, eps=1e-3), nn.ReLU(), nn.Conv3d(f, growth, 3, padding=(pad_t, 1, 1))))
        f += growth
      self.bn_final, self.conv2 = nn.BatchNorm2d(f, eps=1e-3), nn.Conv2d(f, 256, 3, padding=1)
      r2 = SCALE * SCALE
      self.res = nn.Sequential(nn.Conv2d(256, 256, 1), nn.ReLU(), nn.Conv2d(256, 3 * r2, 1))
      self.filt = nn.Sequential(nn.Conv2d(256, 512, 1), nn.ReLU(), nn.Conv2d(512, 25 * r2, 1))

    def forward(self, clip):  # (N, 3, 7, h, w) -> (N, 3, 4h, 4w)
      x = self.conv1(clip)
      for block in self.blocks:
        t = block(x)
        x = torch.cat([x if t.shape[2] == x.shape[2] else x[:, :, 1:-1], t], 1)
      x = F.relu(self.conv2(F.relu(self.bn_final(x[:, :, 0]))))
      n, _, h, w = x.shape
      filters = torch.softmax(self.filt(x).float().view(n, 25, SCALE * SCALE, h, w), dim=1)
      centre = clip[:, :, clip.shape[2] // 2].float()
      patches = F.unfold(centre, 5, padding=2).view(n, 3, 25, h, w)
      filtered = torch.einsum("nckyx,nksyx->ncsyx", patches, filters).reshape(n, 3 * SCALE * SCALE, h, w)
      return F.pixel_shuffle(filtered + self.res(x).float(), SCALE)

  return {"vdsr": VDSR, "rrdbnet": RRDBNet, "duf16": DUF16}


def timed(fn, sync, seconds: float, warmup: int = 3) -> tuple[int, float]:
  """(calls, seconds) of ``fn`` after ``warmup`` calls, with as many calls as fill ``seconds``
  (at least ``warmup``, at least 1, at most 1000)."""
  for _ in range(warmup):
    fn()
  sync()
  t0 = time.perf_counter()
  fn()
  sync()
  n = int(min(1000, max(warmup, 1, seconds / max(time.perf_counter() - t0, 1e-6))))
  t0 = time.perf_counter()
  for _ in range(n):
    fn()
  sync()
  return n, time.perf_counter() - t0


def bench_train(torch, net, name, batch, h, w, dtype, device, fmt, seconds, size) -> dict:
  F = torch.nn.functional
  g = torch.Generator().manual_seed(0)
  if name == "duf16":
    x = torch.rand(batch, 3, 7, h, w, generator=g)
  else:
    x = torch.rand(batch, 3, h, w, generator=g)
  y = torch.rand(batch, 3, h * SCALE, w * SCALE, generator=g)
  fmt3 = torch.channels_last_3d if fmt == torch.channels_last else torch.contiguous_format
  x = x.to(device, memory_format=fmt3 if x.ndim == 5 else fmt)
  y = y.to(device, memory_format=fmt)
  net = net.to(device, memory_format=fmt).train()
  opt = torch.optim.Adam(net.parameters(), lr=1e-4, **({"fused": True} if device == "cuda" else {}))
  loss_fn = {"vdsr": F.mse_loss, "rrdbnet": F.l1_loss,
             "duf16": lambda a, b: F.huber_loss(a, b, delta=0.01)}[name]
  state = {}

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device, torch.bfloat16, enabled=dtype == "bf16"):
      out = net(x)
    loss = loss_fn(out.float(), y)
    loss.backward()
    opt.step()
    state["loss"] = loss.detach()

  n, sec = timed(step, lambda: _sync(torch, device), seconds, WARMUP[size])
  return {"batch": batch, "input_shape": list(x.shape), "steps_timed": n, "step_s": sec / n,
          "steps_per_s": n / sec, "samples_per_s": n * batch / sec, "loss": float(state["loss"])}


def bench_infer(torch, net, batch, h, w, dtype, device, fmt, seconds, size) -> dict:
  x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device, memory_format=fmt)
  net = net.to(device, memory_format=fmt).eval()

  def call():
    with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=dtype == "bf16"):
      return net(x)

  n, sec = timed(call, lambda: _sync(torch, device), seconds, WARMUP[size])
  return {"batch": batch, "input_shape": list(x.shape), "output_hw": [h * SCALE, w * SCALE],
          "calls_timed": n, "call_s": sec / n, "frames_per_s": n * batch / sec}


def _sync(torch, device):
  if device == "cuda":
    torch.cuda.synchronize()


def run(args) -> dict:
  try:
    import torch
  except ImportError:
    return {"available": False, "reason": "torch is not installed (pip install torch)"}
  device = args.device
  if device == "auto":
    if not torch.cuda.is_available():
      return {"available": False, "reason": "no CUDA device (--device cpu runs a smoke check)",
              "torch": torch.__version__}
    device = "cuda"
  torch.backends.cudnn.benchmark = True
  fmt = torch.channels_last if device == "cuda" else torch.contiguous_format
  nets, sizes = build_nets(torch), SIZES[args.size]
  out = {"available": True, "torch": torch.__version__, "device": device, "size": args.size,
         "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
         "memory_format": "channels_last" if device == "cuda" else "contiguous",
         "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32), "train": {}, "infer": {}}
  dtypes = [d for d in args.dtypes.split(",") if d]
  for name in [s for s in args.setups.split(",") if s]:
    batch, h, w, opts = sizes[name]
    for dtype in dtypes:
      torch.manual_seed(0)
      print(f"[torch_reference] {name} {dtype}", file=sys.stderr)
      try:
        if name == "infer":
          batch = args.infer_batch or batch
          for net_name, opts_of in (("vdsr", "vdsr"), ("rrdbnet", "rrdbnet")):
            net = nets[net_name](**sizes[opts_of][3])
            out["infer"].setdefault(net_name, {})[dtype] = bench_infer(torch, net, batch, h, w, dtype, device,
                                                                       fmt, args.seconds, args.size)
        else:
          out["train"].setdefault(name, {})[dtype] = bench_train(torch, nets[name](**opts), name, batch, h, w,
                                                                 dtype, device, fmt, args.seconds, args.size)
      except Exception as e:  # noqa: BLE001  (e.g. out of memory: keep the other setups)
        where = out["infer"] if name == "infer" else out["train"]
        where.setdefault(name, {})[dtype] = {"error": f"{type(e).__name__}: {e}"[:300]}
      if device == "cuda":
        torch.cuda.empty_cache()
  return out


if __name__ == "__main__":
  print(json.dumps(run(parse_args())))
