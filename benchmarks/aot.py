"""Compile for an H100 / H200 on a host without one (XLA's deviceless GPU compilation).

The roofline of a program compiled on a CPU uses XLA:CPU's fusion decisions, which differ from
XLA:GPU's (e.g. TV-L1's iteration: 300 bytes/pixel on CPU, 64 on GPU). With JAX's CUDA plugin
installed, XLA:GPU compiles for a described device without one being present; the optimised HLO
is then costed by ``roofline.cost`` (which re-costs it with the CPU backend's analysis).

  pip install "jax-cuda12-pjrt==$(python -c 'import jax; print(jax.__version__)')" \\
              "jax-cuda12-plugin==$(python -c 'import jax; print(jax.__version__)')"

(~180 MB, no CUDA libraries needed; best in a separate venv, as the plugin then registers a GPU
backend that fails to start on this host). ``setup()`` must run before jax is imported: it keeps
JAX on the CPU and skips the plugin's CUDA library check.

  sharding = aot.target("h100")                       # a compile-only device
  compiled = jax.jit(f).lower(*aot.specs(args, sharding)).compile()
"""

from __future__ import annotations

import os

_GPU_INFO = """gpu_device_info {{
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: {bandwidth} l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: {memory} shared_memory_per_block_optin: 232448
  cuda_compute_capability {{ major: 9 }} registers_per_core_limit: 65536 registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 7 }}
runtime_version {{ major: 12 minor: 8 patch: 0 }}
device_description_str: "{name}"
"""
# NVIDIA datasheets (SXM): HBM bandwidth, memory; the rest is the shared GH100 die.
TARGETS = {
    "h100": _GPU_INFO.format(bandwidth=3352320000000, memory=84929347584, name="NVIDIA H100 80GB HBM3"),
    "h200": _GPU_INFO.format(bandwidth=4800000000000, memory=150754820096, name="NVIDIA H200"),
}


def setup() -> None:
  """Environment for deviceless compilation; call before importing jax.

  Matrix products go to cuBLAS, not Triton: without a device to autotune on, XLA:GPU cannot pick
  tile sizes for some Triton GEMMs (e.g. the bicubic resize's f32[24576,128] dot fails to
  compile). ``roofline.cost`` costs a cuBLAS call from its shapes, as it would cost the Triton
  fusion's dot, so the figures change little; a real GPU may pick Triton.
  """
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_gpu_enable_triton_gemm" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_enable_triton_gemm=false".strip()


MISSING = ("--aot needs JAX's CUDA plugin for deviceless compilation: "
           "see benchmarks/aot.py for the pip command")


def requested(argv=None) -> bool:
  """Whether the command line asks for ``--aot`` (a script then calls ``setup()`` before importing jax)."""
  import sys
  return any(a.startswith("--aot") for a in (sys.argv if argv is None else argv))


def add_argument(parser, help: str) -> None:
  """The scripts' ``--aot`` option: '' (off) or a name in ``TARGETS``."""
  parser.add_argument("--aot", default="", choices=("", *TARGETS), help=help)


def check(parser, args) -> None:
  """A parser error naming the missing plugin when ``--aot`` is asked for without it."""
  if args.aot and not available():
    parser.error(MISSING)


def available() -> bool:
  """Whether JAX's CUDA plugin is installed (deviceless compilation needs nothing else)."""
  import importlib.util
  try:
    return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
  except ModuleNotFoundError:  # no jax_plugins package at all
    return False


def target(name: str):
  """A ``NamedSharding`` on one compile-only ``name`` GPU (see ``TARGETS``); its mesh's axis is ``data``."""
  if name not in TARGETS:
    raise SystemExit(f"--aot {name}: unknown target; known: {sorted(TARGETS)}")
  if not available():
    raise SystemExit(MISSING)
  import jax
  from jax.experimental import topologies
  topology = topologies.get_topology_desc(platform="cuda", target_config=TARGETS[name], topology="1x1x1")
  mesh = topologies.make_mesh(topology, (1,), ("data",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def specs(args, sharding):
  """``jax.ShapeDtypeStruct`` of each array in the pytree ``args``, placed on ``sharding``."""
  import jax
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), args)
