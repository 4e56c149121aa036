"""Recognition-guided SR objectives (TinyVIRAT, Demir et al. ICPR 2020; UgurDemir/Tiny-VIRAT).

``loss.name='attention'``: a progressive DVSR with a foreground attention branch
(``model.attention=True``; the network returns {'sr', 'attention'}) trained with

  l1_weight * L1(SR, HR)
  + attention_l1_weight * mean(sg(A) * |SR - HR|)       reconstruction weighted by the map
  + attention_action_weight * CE(C(sg(SR) * A), y)      weak supervision of the map through C
  + sparsity_weight * mean(A)                           L1 sparsity of the map
  + action_weight * CE(C(SR), y)                        joint SR + action fine-tuning

where C is a frozen clip classifier restored from ``loss.classifier`` (a
recognition workdir: 3D ResNet, WideResNet-3D or I3D trained on HR clips), sg
stops gradients, A (B, T, H, W, 1) is in [0, 1] and y is the clip's label (class
index: softmax CE; multi-hot: sigmoid BCE). Released-code weights: 1, 1, 1, 5e-4
for the attention stage; the joint stage uses L1 x100 + action CE x0.5. Batches
need labels (``data.with_labels=True``) and full-size clips (patch_size 0) so
the classifier sees what it was trained on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from arsr_jax import losses
from arsr_jax.recognition import train_steps


def attention_objective(cfg: ml_collections.ConfigDict):
  from arsr_jax.evaluation import frozen as frozen_lib  # noqa: PLC0415
  if not cfg.get("classifier"):
    raise ValueError("loss.name='attention' needs loss.classifier: the workdir of a clip recognizer trained "
                     "on HR clips (configs/recognizer.py:resnet3d)")
  model, variables, kind, _, _, _, _ = frozen_lib.restore_recognizer(cfg.classifier, jnp.dtype(cfg.compute_dtype))
  if kind != "clip":
    raise ValueError(f"loss.classifier={cfg.classifier} is a {kind!r} recognizer; attention needs a clip model")
  w = {k: float(cfg.get(k, d)) for k, d in (("l1_weight", 1.0), ("attention_l1_weight", 1.0),
                                             ("attention_action_weight", 1.0), ("sparsity_weight", 5e-4),
                                             ("action_weight", 0.0))}

  def classify(frozen, clip):
    if clip.ndim != 5:
      raise ValueError(f"The attention objective needs clips (B, T, H, W, 3) (data.sampler='clip'), got {clip.shape}")
    return train_steps.apply(model, frozen["classifier"], "clip", {"clip": clip}, train=False)["logits"]

  def objective(sr, batch, frozen):
    hr, label = batch["hr"], batch["label"]
    aux = {"l1": losses.l1(sr, hr)}
    loss = w["l1_weight"] * aux["l1"]
    if "attention" in batch:
      att = batch["attention"].astype(jnp.float32)
      aux["attention_l1"] = jnp.mean(jax.lax.stop_gradient(att) * jnp.abs(sr - hr))
      masked = jax.lax.stop_gradient(sr) * att
      aux["attention_action"] = train_steps.classification_loss(classify(frozen, masked), label)
      aux["attention_mean"] = jnp.mean(att)
      loss = (loss + w["attention_l1_weight"] * aux["attention_l1"]
              + w["attention_action_weight"] * aux["attention_action"] + w["sparsity_weight"] * aux["attention_mean"])
    if w["action_weight"]:
      aux["action"] = train_steps.classification_loss(classify(frozen, sr), label)
      loss = loss + w["action_weight"] * aux["action"]
    return loss, aux

  return objective, {"classifier": variables}
