"""Roofline predictions from XLA's cost analysis of a compiled program, shared by every benchmark.

``cost(compiled)`` reads ``compiled.cost_analysis()`` (FLOPs, bytes accessed: per device, as the
partitioned program runs; 2 FLOPs per multiply-add) and corrects it for loops. XLA's
HloCostAnalysis counts a ``while`` body ONCE, whatever its trip count (checked: a 16-step
``fori_loop`` of a matmul reports one matmul's FLOPs). So every ``while`` of the optimized HLO
is re-costed: its body is made the entry of a copy of the module and costed alone, nested loops
first, and counted ``trips`` times. Trips come from XLA's ``known_trip_count`` annotation (scans,
``fori_loop`` with static bounds); a loop without one (a ``while_loop`` that stops early, e.g.
TV-L1's) takes the next entry of ``unknown_trips`` (outermost such loop first, one entry per
nesting depth), which the caller sets to the loop's maximum: the figures are then an UPPER bound
on the work (early stops do less). With no entry left, such a loop counts once and the result is
marked ``"bound": "lower"``. If this jaxlib cannot re-cost HLO (a private API), or re-costing the
whole module disagrees with XLA's own figure by more than 2% of FLOPs (e.g. custom calls it cannot
cost), the raw figures come back with ``"loops": "uncorrected"`` and ``"bound": "lower"``.

``predict(cost, dtype)``: seconds on each GPU in ``PEAKS`` = max(flops / peak, bytes / HBM
bandwidth), the bound that limits it, and the ratio of both. Peaks (NVIDIA datasheets, dense,
SXM): H100 989 TFLOP/s bf16 / 495 TFLOP/s tf32, 3.35 TB/s HBM3; H200 the same compute, 4.8 TB/s
HBM3e. float32 programs use the tf32 peak (XLA's default precision on Hopper). A roofline is a
floor on time: launch gaps, non-matmul work and imperfect fusion add to it. Bytes of a program
compiled on a CPU differ from a GPU compilation's (other fusion decisions): they are an estimate.
A program compiled for a GPU this host does not have (``aot.py``, deviceless) has no cost analysis
of its own; its optimised HLO, with XLA:GPU's fusions, is costed by the CPU backend's analysis, and
its library calls (which that analysis counts as -1 FLOPs and -1 bytes each) from their shapes:
cuDNN convolutions (forward, fused bias + activation, backward input / filter) 2 x (forward output
elements) x (filter elements / output features) FLOPs, cuBLAS GEMMs 2 x (result elements) x
(contracted size); bytes = operands + result, not the workspace. Other custom calls are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

PEAKS = {  # name: (bf16 dense FLOP/s, tf32 dense FLOP/s, HBM bytes/s)
    "h100": (989e12, 494.7e12, 3.35e12),
    "h200": (989e12, 494.7e12, 4.8e12),
}

_WHILE = re.compile(r"\bwhile\(.*?\bbody=%?([\w.\-]+)")
_TRIPS = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CALLS = re.compile(r"\b(?:calls|to_apply|true_computation|false_computation)=%?([\w.\-]+)"
                    r"|\bbranch_computations=\{([^}]*)\}")
_HEADER = re.compile(r"^(ENTRY )?%?([\w.\-]+) \(.*\{$")
_TOKEN = re.compile(r"[\w.\-]+")
_DEF = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\(.*?\)|[\w\[\]{},:]+) ")
_ARRAY = re.compile(r"\b([a-z]+\d*[a-z0-9]*)\[([\d,]*)\]")
_CUSTOM = re.compile(r"custom-call\(([^)]*)\).*custom_call_target=\"([^\"]+)\"")
_LABELS = re.compile(r"dim_labels=(\w+)_(\w+)->(\w+)")
_CONTRACTING = re.compile(r'"lhs_contracting_dimensions":\[([^\]]*)\]')
_ITEM_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
               "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}


def cost(compiled, unknown_trips: Sequence[int] = ()) -> dict:
  """{'flops', 'bytes', 'loops', 'bound'} of a ``jax.stages.Compiled``; see the module docstring.

  'loops' lists each while loop as [trips used, 'known' | 'given' | 'once'].
  """
  raw = _first(compiled.cost_analysis())
  out = {"flops": float(raw.get("flops", 0.0)), "bytes": float(raw.get("bytes accessed", 0.0)),
         "loops": [], "bound": "exact"}
  deviceless = not raw  # compiled for a device this host does not have (benchmarks/aot.py): re-cost here
  try:
    text = compiled.as_text()
    comps = _computations(text)
    if not deviceless and not any(_WHILE.search(line) for body in comps.values() for line in body[1]):
      return out
    client = _cpu_client() if deviceless else _client(compiled)
    corrected = _Corrector(text, comps, client, list(unknown_trips), library_calls=deviceless)
    entry = next(name for name, (is_entry, _) in comps.items() if is_entry)
    recost = corrected.once(entry)
    if deviceless:
      out.update(flops=recost[0], bytes=recost[1])
    elif abs(recost[0] - out["flops"]) > 0.02 * max(out["flops"], 1.0):  # e.g. custom calls it cannot cost
      raise ValueError(f"re-costed entry has {recost[0]:.4g} FLOPs, XLA's analysis {out['flops']:.4g}")
    flops, nbytes = corrected.total(entry, raw_once=(out["flops"], out["bytes"]))
    out.update(flops=flops, bytes=nbytes, loops=corrected.loops,
               bound="lower" if corrected.undercounted else ("upper" if corrected.given else "exact"))
  except Exception as e:  # noqa: BLE001  (private jaxlib API: keep the raw figures)
    out.update(loops="uncorrected", bound="lower", loop_error=f"{type(e).__name__}: {e}"[:200])
  return out


def predict(c: dict | None, dtype: str = "bfloat16", gpus: Sequence[str] = ("h100", "h200")) -> dict | None:
  """{gpu: {'s', 'bound', 'flops_s', 'bytes_s'}} for a ``cost`` dict (None -> None)."""
  if not c or not (c.get("flops") or c.get("bytes")):
    return None
  result = {}
  for gpu in gpus:
    bf16, tf32, bw = PEAKS[gpu]
    peak = tf32 if "float32" in str(dtype) else bf16
    compute_s, memory_s = c["flops"] / peak, c["bytes"] / bw
    result[gpu] = {"s": max(compute_s, memory_s), "bound": "compute" if compute_s >= memory_s else "memory",
                   "flops_s": compute_s, "bytes_s": memory_s}
  return result


def peaks() -> dict:
  """The peak figures used, for a benchmark's JSON (printed once)."""
  return {gpu: {"bf16_dense_flops_per_s": bf16, "tf32_dense_flops_per_s": tf32, "hbm_bytes_per_s": bw}
          for gpu, (bf16, tf32, bw) in PEAKS.items()}


def summary(c: dict | None, dtype: str, items_per_call: float, unit: str, measured_s: float | None = None,
            on_gpu: bool = False) -> dict | None:
  """The block every benchmark prints: cost, predictions, implied ``unit``/s and measured/predicted.

  ``items_per_call``: samples, pairs or videos that one device processes per call of the program
  (the cost is per device); ``measured_s``: seconds per call measured here, compared with the
  predictions only on a GPU (``on_gpu``). None when there is no cost.
  """
  pred = predict(c, dtype)
  if pred is None:
    return None
  out = {"flops": c["flops"], "bytes": c["bytes"], "bound": c["bound"], "loops": compress_loops(c["loops"]),
         "dtype": str(dtype)}
  if "loop_error" in c:
    out["loop_error"] = c["loop_error"]
  for gpu, p in pred.items():
    out[f"{gpu}_s"] = p["s"]
    out[f"{gpu}_limit"] = p["bound"]
    out[f"{gpu}_{unit}_per_s"] = items_per_call / p["s"] if p["s"] else None
    out[f"measured_over_{gpu}"] = measured_s / p["s"] if on_gpu and measured_s and p["s"] else None
  return out


def compress_loops(loops) -> list | str:
  """[[trips, how], ...] -> ['5 known x2', ...] (run-length, for a readable JSON)."""
  if not isinstance(loops, list):
    return loops
  out = []
  for trips, how in loops:
    key = f"{trips} {how}"
    if out and out[-1][0] == key:
      out[-1][1] += 1
    else:
      out.append([key, 1])
  return [k if n == 1 else f"{k} x{n}" for k, n in out]


def safe_cost(compiled, unknown_trips: Sequence[int] = ()) -> dict | None:
  """``cost`` or None where the backend has no cost analysis."""
  try:
    return cost(compiled, unknown_trips)
  except Exception:  # noqa: BLE001
    return None


# ----------------------------------------------------------------------------- HLO plumbing


def _first(ca) -> dict:
  """cost_analysis() is a dict, or a list of one dict per program in older JAX."""
  if isinstance(ca, (list, tuple)):
    ca = ca[0] if ca else {}
  return dict(ca or {})


def _cpu_client():
  import jax
  return jax.devices("cpu")[0].client


def _client(compiled):
  import jax
  try:
    return compiled.runtime_executable().client
  except Exception:  # noqa: BLE001
    return jax.devices()[0].client


def _computations(text: str) -> dict[str, tuple[bool, list[str]]]:
  """{name: (is_entry, instruction lines)} of an HLO module's text."""
  comps, name = {}, None
  for line in text.split("\n"):
    if m := _HEADER.match(line):
      name = m[2]
      comps[name] = (bool(m[1]), [])
    elif line.startswith("}"):
      name = None
    elif name is not None:
      comps[name][1].append(line)
  return comps


class _Corrector:
  """Loop-aware totals: total(C) = once(C) + sum over C's whiles of (trips * total(body) - once(body))."""

  def __init__(self, text, comps, client, unknown_trips, library_calls=False):
    self.lines, self.comps, self.client, self.library_calls = text.split("\n"), comps, client, library_calls
    self.unknown, self.loops, self.given, self.undercounted = unknown_trips, [], False, False
    self._once: dict[str, tuple[float, float]] = {}
    self._calls: dict[str, list[tuple[float, float]]] = {}  # library calls' costs per computation
    self._callees: dict[str, set[str]] | None = None

  def total(self, comp: str, raw_once=None, depth: int = 0) -> tuple[float, float]:
    flops, nbytes = raw_once or self.once(comp)
    for line in self._lines_reached(comp):
      if not (m := _WHILE.search(line)):
        continue
      body = m[1]
      if t := _TRIPS.search(line):
        trips, how = int(t[1]), "known"
      elif depth < len(self.unknown):
        trips, how = int(self.unknown[depth]), "given"
        self.given = True
      else:
        trips, how = 1, "once"
        self.undercounted = True
      self.loops.append([trips, how])
      inner = self.total(body, depth=depth + (how != "known"))
      once = self.once(body)
      flops += trips * inner[0] - once[0]
      nbytes += trips * inner[1] - once[1]
    return flops, nbytes

  def _lines_reached(self, comp: str, seen=None):
    """Lines of ``comp`` and of computations it calls (not loop bodies: they are costed apart)."""
    seen = set() if seen is None else seen
    if comp in seen or comp not in self.comps:
      return
    seen.add(comp)
    for line in self.comps[comp][1]:
      yield line
      if _WHILE.search(line):
        continue
      for m in _CALLS.finditer(line):
        for callee in ([m[1]] if m[1] else [s.strip().lstrip("%") for s in m[2].split(",")]):
          yield from self._lines_reached(callee, seen)

  def _reachable(self, comp: str) -> set[str]:
    """``comp`` and every computation it calls, directly or not (fusions, loops, reducers, ...)."""
    if self._callees is None:
      names = set(self.comps)
      self._callees = {name: {t for line in lines for t in _TOKEN.findall(line)} & names - {name}
                       for name, (_, lines) in self.comps.items()}
    seen, todo = set(), [comp]
    while todo:
      name = todo.pop()
      if name not in seen:
        seen.add(name)
        todo.extend(self._callees.get(name, ()))
    return seen

  def once(self, comp: str) -> tuple[float, float]:
    """XLA's cost of ``comp`` as the entry of a copy of the module (its own loops counted once)."""
    if comp not in self._once:
      from jax._src.lib import xla_client
      from jaxlib import _hlo
      keep, lines, inside = self._reachable(comp), [], None
      for line in self.lines:  # only the computations ``comp`` reaches: a smaller module to parse
        if m := _HEADER.match(line):
          inside = m[2]
        if inside is None or inside in keep:
          if line.startswith("HloModule "):
            line = "HloModule roofline_part"
          elif line.startswith("ENTRY "):
            line = line[len("ENTRY "):]
          elif m and m[2] == comp:
            line = "ENTRY " + line
          lines.append(line)
        if inside is not None and line.startswith("}"):
          inside = None
      module = _hlo.hlo_module_from_text("\n".join(lines))
      ca = xla_client._xla.hlo_module_cost_analysis(self.client, module)  # noqa: SLF001
      flops, nbytes = float(ca.get("flops", 0.0)), float(ca.get("bytes accessed", 0.0))
      if self.library_calls:  # the CPU's analysis counted each library call as -1 FLOPs, -1 bytes
        for name in keep:
          if name not in self._calls:  # a computation reached from several loops is parsed once
            self._calls[name] = library_call_costs(self.comps.get(name, (False, []))[1])
          for call in self._calls[name]:
            flops, nbytes = flops + 1 + call[0], nbytes + 1 + call[1]
      self._once[comp] = (flops, nbytes)
    return self._once[comp]


def library_call_costs(lines: Sequence[str]) -> list[tuple[float, float]]:
  """(FLOPs, bytes) of each cuDNN convolution / cuBLAS GEMM custom call among one computation's
  HLO lines, from its operand and result shapes (see the module docstring); other custom calls raise."""
  types = {m[1]: m[2] for line in lines if (m := _DEF.match(line))}
  costs = []
  for line in lines:
    if not (m := _CUSTOM.search(line)):
      continue
    operands, target = [_arrays(types[o.strip().lstrip("%")])[0] for o in m[1].split(",") if o.strip()], m[2]
    result = _arrays(_DEF.match(line)[2])[0]  # a library call's (result, workspace) tuple: the result
    nbytes = sum(_nbytes(a) for a in operands) + _nbytes(result)
    if target.startswith("__cudnn$conv"):
      rhs = _LABELS.search(line)[2]
      if "BackwardFilter" in target:
        filt, out = result, operands[1]
      else:
        filt, out = operands[1], operands[0] if "BackwardInput" in target else result
      flops = 2.0 * math.prod(out[1]) * math.prod(filt[1]) / filt[1][rhs.index("o")]
    elif target.startswith("__cublas$"):
      lhs = operands[0][1]
      contracted = [int(d.strip('" ')) for d in _CONTRACTING.search(line)[1].split(",") if d.strip('" ')]
      flops = 2.0 * math.prod(result[1]) * math.prod(lhs[d] for d in contracted)
    else:
      raise ValueError(f"custom call {target!r} cannot be costed from its shapes")
    costs.append((flops, float(nbytes)))
  return costs


def _arrays(type_str: str) -> list[tuple[str, list[int]]]:
  return [(dt, [int(d) for d in dims.split(",") if d]) for dt, dims in _ARRAY.findall(type_str)]


def _nbytes(array: tuple[str, list[int]]) -> int:
  return math.prod(array[1]) * _ITEM_BYTES[array[0]]

