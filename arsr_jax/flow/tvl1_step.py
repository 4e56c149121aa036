"""One TV-L1 primal-dual iteration (thresholding, primal and dual step), in two equal formulations.

The iteration is memory bound: per pixel it reads the flow u (2 components), the dual variable p
(2 x 2) and the linearised data term (I1x, I1y, rho_c; |grad I1|^2 is recomputed from I1x, I1y)
and writes u and p: 60 bytes in float32, 40 with ``TVL1Params.storage='float16'`` (p and the data
term in 16 bits), for ~130 FLOPs. The new p needs the NEW u at the right and lower neighbours, so
the plain formulation (``step_split``) makes XLA write the new u to memory and read it back
shifted. ``step_fused`` instead recomputes the new u at those neighbours from shifted views of the
inputs (3x the arithmetic of the thresholding), which lets XLA:GPU emit the whole iteration, with
the early-stop reduction and the per-pair ``where``, as ONE kernel.

Measured (one iteration of a batch of 8 at 320x240, with the solver's per-pair select; bytes are
XLA's cost analysis of the optimised program): compiled for an H100 (deviceless, see
benchmarks/README.md), split 152 B/pixel in 5 kernels, fused 64 B/pixel in 4 (one per-pixel
kernel, the rest reduce 8 numbers); on XLA:CPU the fused form is 6x slower (27 vs 4.2 ms on 2
cores), as the CPU backend does not fuse it. ``primal_dual_step`` therefore picks the split form
on CPU and the fused one elsewhere (``lax.platform_dependent``: decided when lowering). Both
compute the same values with the same operations in the same order (tests/test_flow_tvl1.py).
Two steps as one expression (the state after the first recomputed at every neighbour the second
reads) was tried: XLA:GPU splits it into two kernels again (92 B/pixel a step).

Shapes: u a tuple of C (N, H, W) flow components in pixels (C = 3 with the illumination term),
p a tuple of C (px, py) pairs, coeffs (I1x, I1y[, gamma]) (N, H, W) arrays (gamma a float),
grad and rho_c (N, H, W).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from arsr_jax.flow.ops import divergence, forward_gradient, shift

FLT_EPSILON = float(np.finfo(np.float32).eps)


def primal_dual_step(u, p, coeffs, rho_c, params, form: str = "auto"):
  """(u, p, change): the next u and p and change (N,), the summed squared update of u (px^2).

  ``p``, ``coeffs`` and ``rho_c`` may be stored in ``params.storage`` (float16 halves the bytes
  they move); the arithmetic is float32 and p comes back in its own dtype. |grad I1|^2 is
  recomputed from (I1x, I1y) rather than read (4 bytes/pixel fewer). ``params`` is a
  ``TVL1Params`` (tau, lambda_, theta are read); ``form``: 'auto' (the platform's), 'split'
  or 'fused' (for comparisons).
  """
  f32 = lambda a: a.astype(jnp.float32) if hasattr(a, "astype") else a  # noqa: E731  (gamma is a float)
  coeffs, rho_c = tuple(f32(c) for c in coeffs), f32(rho_c)
  grad = coeffs[0] * coeffs[0] + coeffs[1] * coeffs[1]
  split, fused = (functools.partial(f, params=params) for f in (step_split, step_fused))
  args = (u, jax.tree.map(f32, p), coeffs, grad, rho_c)
  if form == "auto":
    u_new, p_new, change = lax.platform_dependent(*args, cpu=split, default=fused)
  else:
    u_new, p_new, change = {"split": split, "fused": fused}[form](*args)
  return u_new, jax.tree.map(lambda a, b: a.astype(b.dtype), p_new, p), change


def _threshold(rho, grad, lt):
  """The thresholding step v - u of TV-L1 for residual rho and |grad I1|^2 (OpenCV's cases)."""
  safe_grad = jnp.where(grad > FLT_EPSILON, grad, 1.0)
  return jnp.where(rho < -lt * grad, lt,
                   jnp.where(rho > lt * grad, -lt,
                             jnp.where(grad > FLT_EPSILON, -rho / safe_grad, 0.0)))


def step_split(u, p, coeffs, grad, rho_c, params):
  """``primal_dual_step`` as written: the new u first, then its forward gradient for p."""
  lt = params.lambda_ * params.theta
  taut = params.tau / params.theta
  step = _threshold(rho_c + sum(a * c for a, c in zip(coeffs, u)), grad, lt)
  u_new, p_new, change = [], [], 0.0
  for uc, (px, py), a in zip(u, p, coeffs):
    un = uc + step * a + params.theta * divergence(px, py)
    change = change + jnp.sum((un - uc) ** 2, axis=(1, 2))
    dx, dy = forward_gradient(un)
    norm = 1.0 + taut * jnp.sqrt(dx * dx + dy * dy)
    u_new.append(un)
    p_new.append(((px + taut * dx) / norm, (py + taut * dy) / norm))
  return tuple(u_new), tuple(p_new), change


def step_fused(u, p, coeffs, grad, rho_c, params):
  """``primal_dual_step`` with the new u recomputed at the right and lower neighbours."""
  lt = params.lambda_ * params.theta
  taut = params.tau / params.theta
  h, w = grad.shape[-2:]

  def u_new_at(dy, dx):  # the new u at (y + dy, x + dx); zero-padded divergence as in ``divergence``
    at = lambda a, ddy=0, ddx=0: shift(a, dy + ddy, dx + ddx)  # noqa: E731
    step = _threshold(at(rho_c) + sum(at(a) * at(c) for a, c in zip(coeffs, u)), at(grad), lt)
    return [at(uc) + step * at(a) + params.theta * (at(px) - at(px, 0, -1) + at(py) - at(py, -1, 0))
            for uc, (px, py), a in zip(u, p, coeffs)]

  here, right, below = u_new_at(0, 0), u_new_at(0, 1), u_new_at(1, 0)
  last_col = jnp.arange(w) == w - 1
  last_row = (jnp.arange(h) == h - 1)[:, None]
  p_new, change = [], 0.0
  for k, (uc, (px, py)) in enumerate(zip(u, p)):
    change = change + jnp.sum((here[k] - uc) ** 2, axis=(1, 2))
    dx = jnp.where(last_col, 0.0, right[k] - here[k])  # forward differences, 0 on the last column / row
    dy = jnp.where(last_row, 0.0, below[k] - here[k])
    norm = 1.0 + taut * jnp.sqrt(dx * dx + dy * dy)
    p_new.append(((px + taut * dx) / norm, (py + taut * dy) / norm))
  return tuple(here), tuple(p_new), change
