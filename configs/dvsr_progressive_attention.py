"""Progressive DVSR with weakly supervised foreground attention (TinyVIRAT, ICPR 2020).

The last stage (x4) of configs/dvsr_progressive.py with the attention branch, trained through a
frozen clip classifier (losses.py, attention objective):

  python -m arsr_jax.main --config configs/recognizer.py:resnet3d --workdir W_CLS
  python -m arsr_jax.main --config configs/dvsr_progressive_attention.py --workdir W_ATT \\
      --config.loss.classifier=W_CLS --config.train.init_from=W_STAGE2
  python -m arsr_jax.main --config configs/dvsr_progressive_attention.py:joint --workdir W_JOINT \\
      --config.loss.classifier=W_CLS --config.train.init_from=W_ATT

Variant 'joint' fine-tunes SR with the action loss on classifier(G(LR)) (L1 x100 + CE x0.5).
The classifier must be trained on HR clips of the same data, size and clip_length.
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "joint"), "dvsr_progressive_attention")
  c = config_lib.progressive_dvsr_recipe({"stage2"} | (variant & {"smoke"}))
  c.model.attention = True
  c.train.fade_steps = None  # starts from a trained stage-2 model (train.init_from)
  c.data.with_labels = True
  c.data.flip = False  # flips would change motion classes (e.g. left vs right)
  c.data.patch_size = 128  # whole frames: the classifier sees what it was trained on
  c.loss.name = "attention"
  c.loss.classifier = ml_collections.config_dict.placeholder(str)  # recognition workdir (clip model)
  c.loss.l1_weight = 1.0
  c.loss.attention_l1_weight = 1.0
  c.loss.attention_action_weight = 1.0
  c.loss.sparsity_weight = 5e-4
  c.loss.action_weight = 0.0
  if "joint" in variant:
    c.loss.l1_weight, c.loss.action_weight = 100.0, 0.5
    c.optimizer.learning_rate = 5e-5
  if "smoke" in variant:
    c.data.patch_size = 64
  return c
