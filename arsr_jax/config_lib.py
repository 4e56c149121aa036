"""Defaults shared by every recipe in configs/; recipes override what differs.

Sizes are HR pixels unless named otherwise; ``scale`` is the SR factor.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.mode = "train"  # train | eval (restore the latest checkpoint and evaluate)
  c.scale = 4

  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic_actions/default"  # any prepared TFDS dataset with hr/lr/flow clips
  c.data.data_dir = ml_collections.config_dict.placeholder(str)  # None = TFDS default
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.patch_size = 128  # HR training patch side (0 = whole square frame)
  c.data.flip = True  # random horizontal/vertical flips (flow rotated accordingly)
  c.data.worker_count = 0  # grain worker processes (0 = read in the main process)
  c.data.read_threads = 4

  c.model = ml_collections.ConfigDict()
  c.model.name = "vdsr"

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "mse"

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 0
  c.optimizer.grad_clip_norm = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64  # global batch over all devices
  c.train.num_steps = 50_000
  c.train.log_every = 100
  c.train.checkpoint_every = 2_000
  c.train.keep_checkpoints = 3
  # Stop this invocation after N steps (checkpointing first); rerun to resume. None = run to the end.
  c.train.steps_per_run = ml_collections.config_dict.placeholder(int)

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 64
  c.eval.moving_threshold = 0.5  # px of HR flow; 'moving' metrics use only those pixels
  c.eval.max_clips = ml_collections.config_dict.placeholder(int)  # None = whole split
  return c
