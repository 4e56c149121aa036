"""recognition/conv.py: strided 3D convolutions as stride-1 convolutions on space-to-depth input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsr_jax.recognition import conv, resnet3d


@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((1, 9, 13, 10, 3), (7, 7, 7), (2, 2, 2), "SAME"),          # I3D's stem on odd sizes
    ((2, 5, 11, 12, 4), (3, 2, 5), (2, 3, 1), "SAME"),          # mixed strides, kernels shorter than strides
    ((1, 8, 14, 15, 3), (3, 7, 7), (1, 2, 2), [(1, 1), (3, 3), (3, 3)]),  # ResNet3D's stem
    ((1, 7, 9, 8, 4), (3, 3, 3), (2, 2, 2), [(1, 1)] * 3),     # a strided ResNet block
    ((1, 7, 9, 8, 4), (1, 1, 1), (2, 2, 2), [(0, 0)] * 3),     # its downsampling shortcut
    ((1, 9, 9, 9, 2), (3, 3, 3), (2, 2, 2), "VALID"),
    ((1, 7, 2), (4,), (3,), "SAME"),
])
def test_space_to_depth_equals_the_strided_conv(shape, kernel, strides, padding):
  """strided_conv == lax's strided convolution, in value and in both gradients."""
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), (*kernel, shape[-1], 5))
  nd = len(kernel)
  spec = "N" + "DHW"[-nd:] + "C"
  ref = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
      x, w, strides, padding, dimension_numbers=(spec, "DHW"[-nd:] + "IO", spec), precision="highest")
  got = lambda x, w: conv.strided_conv(x, w, strides, padding)  # noqa: E731
  assert got(x, w).shape == ref(x, w).shape
  np.testing.assert_allclose(got(x, w), ref(x, w), atol=2e-4, rtol=1e-4)
  probe = jax.random.normal(jax.random.key(2), ref(x, w).shape)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * probe)  # noqa: E731
  for g, r in zip(jax.grad(loss(got), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
    np.testing.assert_allclose(g, r, atol=5e-4, rtol=1e-4)


def test_resnet3d_keeps_its_parameters_and_outputs():
  """ResNet3D with the space-to-depth strided convs: the nn.Conv parameter tree, the same logits."""
  net = resnet3d.ResNet3D(depth=10, num_classes=3, width=8)
  x = jax.random.uniform(jax.random.key(0), (1, 8, 32, 32, 3))
  v = net.init(jax.random.key(1), x)
  assert set(v["params"]["conv1"]) == {"kernel"} and v["params"]["conv1"]["kernel"].shape == (7, 7, 7, 3, 8)
  assert set(v["params"]["layer2_0"]["downsample_conv"]) == {"kernel"}

  calls = []

  def lax_conv(mdl, x):  # the same network with every strided convolution computed by lax directly
    calls.append(mdl.name)
    return jax.lax.conv_general_dilated(x, mdl.variables["params"]["kernel"], mdl.strides, mdl.padding,
                                        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"), precision="highest")
  with nn_intercept(conv.StridedConv, lax_conv):
    ref = net.apply(v, x)
  assert len(calls) == 7  # the stem, and conv1 + downsample_conv of the 3 strided stages
  np.testing.assert_allclose(net.apply(v, x), ref, atol=1e-4, rtol=1e-4)


def nn_intercept(cls, fn):
  import flax.linen as nn

  def interceptor(next_fun, args, kwargs, context):
    if isinstance(context.module, cls) and context.method_name == "__call__":
      return fn(context.module, *args)
    return next_fun(*args, **kwargs)
  return nn.intercept_methods(interceptor)
