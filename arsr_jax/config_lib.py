"""Defaults shared by every recipe in configs/; recipes override what differs.

Sizes are HR pixels unless named otherwise; ``scale`` is the SR factor.
"""

import difflib
import importlib.util
import os
import sys

import ml_collections



class Mismatch(ValueError):
  """A run refused before any work because its inputs do not fit together (a recognizer trained on
  other data, an SR checkpoint of another scale, ...): ``python -m arsr_jax.main`` prints its
  message as one line and exits with status 2."""

def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # What the run does: 'sr' trains/evaluates an SR network; 'recognition' trains/evaluates an
  # action recognizer on HR clips (section recognizer); 'protocol' runs the recognition-based
  # evaluation protocol over SR methods (section protocol; see evaluation/protocol.py).
  c.task = "sr"
  c.mode = "train"  # train | eval (restore the latest checkpoint and evaluate)
  c.scale = 4
  c.compute_dtype = "auto"  # auto (bfloat16 on GPU/TPU, float32 on CPU) | float32 | bfloat16

  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic_actions/default"  # any prepared TFDS dataset with hr/lr/flow clips
  c.data.data_dir = ml_collections.config_dict.placeholder(str)  # None = TFDS default
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.patch_size = 128  # HR training patch side (0 = whole square frame)
  c.data.sampler = "frame"  # frame | pair (ToSR siamese) | clip (video models); see data/pipeline.py
  c.data.input_frames = 1  # LR frames per output frame (7 for VSR-DUF), centred window
  c.data.clip_length = 1  # frames per 'clip' example
  # HR flow for WMSE weights, ToSR warps and moving-pixel metrics: 'dataset' (stored, e.g. exact
  # synthetic flow) or 'tvl1' (TV-L1 of the HR frames, computed on the accelerator each step).
  c.data.flow_source = "dataset"
  c.data.tvl1 = ml_collections.ConfigDict()  # TVL1Params overrides, e.g. nscales, warps (OpenCV defaults)
  # Random flips: SR sampling horizontal and vertical (flow rotated accordingly); recognizer training
  # horizontal only (TSN Sec. 3.3; flow u negated); clips (3D CNNs) are not flipped.
  c.data.flip = True
  c.data.with_labels = False  # SR batches also carry the clip label (recognition-guided losses)
  # Recognition sampling (TSN): segments per training clip, flow frames per stack (2x channels).
  c.data.num_segments = 3
  c.data.flow_stack = 5
  c.data.crop_size = 0  # random crop side for recognizers (0 = whole frame)
  # Recognizers: TSN's corner cropping + scale jittering (Sec. 3.3), crop sides as fractions of the
  # shorter frame side, resized to crop_size; () = plain random crops of crop_size.
  c.data.scale_jitter = ()
  c.data.resize = 0  # recognizers: resize frames to resize x resize first (variable-size clips; 0 = off)
  # Clip recognizers trained on SR output (TinyVIRAT eq. 4): '' = HR frames; 'bicubic' or an SR workdir:
  # LR clips -> that frozen SR (eval mode, in the jitted step) -> [0, 1], 8-bit -> resize -> classifier.
  c.data.sr_input = ""
  c.data.lr_size = 0  # sr_input: LR frames resized to lr_size x lr_size first (0 = the stored 'lr' frames)
  # grain worker processes for the training input (0 = read in the main process); -1 = auto
  # (data/pipeline.resolve_worker_count): min(16, host cores // local devices - 1) on GPU/TPU, 0 on CPU.
  c.data.worker_count = -1
  c.data.read_threads = 4

  c.model = ml_collections.ConfigDict()
  c.model.name = "vdsr"

  # task='recognition': recognition.RECOGNIZERS name and its fields (num_classes from the data).
  c.recognizer = ml_collections.ConfigDict()
  c.recognizer.name = ml_collections.config_dict.placeholder(str)

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "mse"

  # Adversarial recipes name a discriminator (models.MODELS) and its optimizer.
  c.discriminator = ml_collections.ConfigDict()
  c.discriminator.name = ml_collections.config_dict.placeholder(str)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 0
  c.optimizer.grad_clip_norm = 0.0

  c.optimizer_d = c.optimizer.copy_and_resolve_references()

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64  # global batch over all devices
  c.train.num_steps = 50_000
  c.train.log_every = 100
  c.train.checkpoint_every = 2_000
  c.train.keep_checkpoints = 3
  # Stop this invocation after N steps (checkpointing first); rerun to resume. None = run to the end.
  c.train.steps_per_run = ml_collections.config_dict.placeholder(int)
  # Workdir whose latest generator parameters initialize a new run (a sub-network: names/shapes
  # copied), or an official ESRGAN/BasicSR RRDBNet .pth file for an rrdbnet generator.
  c.train.init_from = ml_collections.config_dict.placeholder(str)
  # Exponential moving average of the generator (e.g. 0.999, ESRGAN); evaluation uses it. None = off.
  c.train.ema_decay = ml_collections.config_dict.placeholder(float)
  # Progressive growing: the network's fade-in alpha goes 0 -> 1 over this many steps (None = no fade).
  c.train.fade_steps = ml_collections.config_dict.placeholder(int)
  # Restoring: a damaged latest checkpoint (checksum mismatch, unreadable) is skipped for the newest
  # intact one with a warning naming it; True raises instead.
  c.train.strict_restore = False

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 64
  c.eval.moving_threshold = 0.5  # px of HR flow; 'moving' metrics use only those pixels
  c.eval.max_clips = ml_collections.config_dict.placeholder(int)  # None = whole split
  c.eval.num_segments = 25  # TSN test protocol: 25 frames (or flow stacks) per video
  # Validation during training (evaluation/periodic.py): every N steps the evaluator runs on the
  # eval split (capped by eval.max_clips) -> eval/step_N.json and eval/* TensorBoard scalars. 0 = off.
  c.eval.every_steps = 5_000

  # task='protocol': the recognition-based protocol (evaluation/protocol.py).
  c.protocol = ml_collections.ConfigDict()
  # Comma-separated methods: 'bicubic', 'hr', or NAME=SPATIAL[:TEMPORAL], each side 'bicubic',
  # 'hr' or an SR workdir (e.g. 'vdsr=W1,sosr+tosr=W2:W3'). One side means both streams.
  c.protocol.methods = "bicubic,hr"
  c.protocol.spatial = ""  # workdir of a TSN rgb recognizer (spatial stream)
  c.protocol.temporal = ""  # workdir of a TSN flow recognizer (temporal stream)
  c.protocol.two_stream = ""  # workdir of an ST-ResNet (both streams in one network)
  c.protocol.clip = ""  # workdir of a clip recognizer (I3D, 3D ResNets), or 'i3d_kinetics400'
  # spatial : temporal late fusion; () = the recognizer's own rule: TSN 1 : 1.5 (TSN's
  # eval_scores.py), ST-ResNet 1 : 1 (its released test averages the two prediction layers).
  c.protocol.fusion_weights = ()
  # Test views per segment: 10 = TSN's 4 corner + centre crops and their mirrors (the papers'
  # protocol, tsn-pytorch test_models.py --test_crops 10); 1 = the centre crop (10x cheaper).
  c.protocol.views = 10
  c.protocol.flow_bound = 20.0  # TSN flow storage range: flow clipped to +-bound px
  c.protocol.clip_length = 16  # consecutive-frame windows of clip recognizers (TinyVIRAT)
  c.protocol.threshold = 0.5  # multi-label decision threshold on sigmoid scores
  c.protocol.tvl1 = ml_collections.ConfigDict()  # TVL1Params overrides for the SR frames' flow
  c.protocol.profiles = 4  # videos whose temporal profiles are drawn to plots/
  # Clip path on natively small video (TinyVIRAT, no HR): LR clips resized to lr_size first (0 = as
  # stored; fixed sizes bound recompilation), SR output resized to the recognizer's input_size.
  c.protocol.lr_size = 0
  c.protocol.input_size = 0
  return c


def _configs_dir() -> str:
  """The recipes: the repository's configs/ (source tree, editable install) or, installed from a
  wheel, the same files shipped as the package arsr_jax.configs (pyproject.toml's package-dir)."""
  here = os.path.dirname(os.path.abspath(__file__))
  source = os.path.join(os.path.dirname(here), "configs")
  return source if os.path.isfile(os.path.join(source, "sosr_vdsr.py")) else os.path.join(here, "configs")


CONFIGS_DIR = _configs_dir()


NOT_RECIPES = ("common",)  # configs/common.py: pieces several recipes share (``configs_module``)


def recipe_names() -> list[str]:
  """Names of the recipes in CONFIGS_DIR (``sosr_vdsr``, ...), sorted."""
  if not os.path.isdir(CONFIGS_DIR):
    return []
  return sorted(f[:-3] for f in os.listdir(CONFIGS_DIR)
                if f.endswith(".py") and not f.startswith("_") and f[:-3] not in NOT_RECIPES)


def configs_module(name: str):
  """``CONFIGS_DIR/<name>.py`` imported once (``common``, which recipes share): recipes are loaded
  by path, outside any package, so they import their shared pieces through this."""
  key = f"arsr_jax_configs_{name}"
  if key not in sys.modules:
    spec = importlib.util.spec_from_file_location(key, os.path.join(CONFIGS_DIR, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
      spec.loader.exec_module(module)
    except BaseException:
      del sys.modules[key]
      raise
  return sys.modules[key]


def resolve_config_path(value: str) -> str:
  """``--config``'s file part: an existing path as given, else a recipe name (``sosr_vdsr``) as its
  file in CONFIGS_DIR. Raises FileNotFoundError naming the closest path or recipe name."""
  if os.path.isfile(value):
    return value
  if value and os.sep not in value and not value.endswith(".py"):
    path = os.path.join(CONFIGS_DIR, f"{value}.py")
    if os.path.isfile(path):
      return path
    if value in RENAMED_RECIPES:
      raise FileNotFoundError(f"--config {value}: renamed; use {RENAMED_RECIPES[value]}")
    close = difflib.get_close_matches(value, recipe_names(), n=1)
    hint = f"; did you mean {close[0]}?" if close else f" (recipes: {', '.join(recipe_names())})"
    raise FileNotFoundError(f"--config {value}: no such file or recipe{hint}")
  folder = os.path.dirname(value) or "."
  names = sorted(f for f in os.listdir(folder) if f.endswith(".py")) if os.path.isdir(folder) else []
  close = difflib.get_close_matches(os.path.basename(value), names, n=1)
  hint = f"; did you mean {os.path.join(os.path.dirname(value), close[0])}?" if close else ""
  raise FileNotFoundError(f"--config {value}: no such file{hint}")


def load_config_file(path: str, arg: str = "") -> ml_collections.ConfigDict:
  """``get_config(arg)`` of the Python config file at ``path``."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No config file {path}")
  spec = importlib.util.spec_from_file_location(f"arsr_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def recipe(name: str, arg: str = "", overrides: dict | None = None) -> ml_collections.ConfigDict:
  """``configs/<name>.py``'s get_config(arg) with dotted-key ``overrides`` (new keys allowed).

  For drivers that chain runs (arsr_jax/studies/) and tests.
  """
  c = load_config_file(os.path.join(CONFIGS_DIR, f"{name}.py"), arg)
  for key, value in (overrides or {}).items():
    *path, leaf = key.split(".")
    target = c
    for part in path:
      target = target[part]
    with target.unlocked():
      target[leaf] = value
  return c


def parse_variant(arg: str, allowed: tuple[str, ...], recipe: str) -> set[str]:
  """'smoke,stage2' -> {'smoke', 'stage2'}; unknown tokens are an error naming the recipe."""
  tokens = {t for t in arg.split(",") if t}
  unknown = tokens - set(allowed)
  if unknown:
    raise ValueError(f"Unknown variant {sorted(unknown)} of {recipe}; use a comma-separated subset of {allowed}")
  return tokens


def set_run_length(c: ml_collections.ConfigDict, num_steps: int) -> ml_collections.ConfigDict:
  """Sets train.num_steps, scaling step-schedule boundaries with it (a recipe's schedule keeps its
  shape, e.g. SoSR's /10 every quarter); the fade-in (a per-iteration rate in the papers) is kept."""
  old = int(c.train.num_steps)
  for opt in ("optimizer", "optimizer_d"):
    if opt in c and c[opt].get("boundaries"):
      c[opt].boundaries = tuple(max(1, round(b * num_steps / old)) for b in c[opt].boundaries)
  c.train.num_steps = int(num_steps)
  return c


# Renamed keys (old -> new): an old key in a config file or a --config.* override is refused with
# one line naming the new key; run configs stored before (config.json, checkpoint meta) read renamed.
RENAMED = {"evaluate": "protocol", "data.new_length": "data.flow_stack",
           "recognizer.new_length": "recognizer.flow_stack"}  # tsn-pytorch's name for the flow stack
RENAMED_VALUES = {"task": {"evaluate": "protocol"}}
RENAMED_RECIPES = {"evaluate": "protocol"}


def renamed_key(key: str) -> str | None:
  """The new name of dotted ``key`` (or of the section it is in) if it was renamed, else None."""
  for old, new in RENAMED.items():
    if key == old or key.startswith(old + "."):
      return new + key[len(old):]
  return None


def upgrade_stored(stored: dict) -> dict:
  """A run config or checkpoint meta (a JSON dict) written before a rename, with today's names."""
  out = {k: dict(v) if isinstance(v, dict) else v for k, v in stored.items()}
  for old, new in RENAMED.items():
    *old_section, old_leaf = old.split(".")
    *new_section, new_leaf = new.split(".")
    src = out.get(old_section[0]) if old_section else out
    dst = out.get(new_section[0]) if new_section else out
    if isinstance(src, dict) and isinstance(dst, dict) and old_leaf in src and new_leaf not in dst:
      dst[new_leaf] = src.pop(old_leaf)
  for key, values in RENAMED_VALUES.items():
    if out.get(key) in values:
      out[key] = values[out[key]]
  return out


# Optional keys a recipe may add to a section beyond the defaults above.
OPTIONAL_KEYS = {
    "optimizer": {"b1", "b2", "weight_decay", "momentum", "boundaries", "decay_factor", "bias_lr_factor"},
    "optimizer_d": {"b1", "b2", "weight_decay", "momentum", "boundaries", "decay_factor", "bias_lr_factor"},
    "eval": {"border"},
}
# Sections whose keys are checked by their consumer (models.build_model; losses.resolve, run by main.check).
FREE_SECTIONS = ("model", "loss", "discriminator", "recognizer")


MODES = ("train", "eval")
TASKS = ("sr", "recognition", "protocol")
SCALES = (1, 2, 3, 4, 8)
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")

# key -> (test, what it must be); None passes where the key is optional (a placeholder).
def _INT(lo: int):
  return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _OPTIONAL(test):
  return lambda v: v is None or test(v)


VALUE_RULES = {
    "scale": (lambda v: v in SCALES, f"one of {SCALES}"),
    "compute_dtype": (lambda v: v in COMPUTE_DTYPES, f"one of {COMPUTE_DTYPES}"),
    "train.batch_size": (_INT(1), "an integer >= 1"),
    "train.num_steps": (_INT(1), "an integer >= 1"),
    "train.log_every": (_INT(1), "an integer >= 1"),
    "train.checkpoint_every": (_INT(1), "an integer >= 1"),
    "train.keep_checkpoints": (_INT(1), "an integer >= 1"),
    "train.steps_per_run": (_OPTIONAL(_INT(1)), "None or an integer >= 1"),
    "train.fade_steps": (_OPTIONAL(_INT(1)), "None or an integer >= 1"),
    "train.ema_decay": (_OPTIONAL(lambda v: 0.0 <= v < 1.0), "None or a number in [0, 1)"),
    "optimizer.learning_rate": (lambda v: v > 0, "a number > 0"),
    "optimizer.warmup_steps": (_INT(0), "an integer >= 0"),
    "optimizer.grad_clip_norm": (lambda v: v >= 0, "a number >= 0"),
    "eval.batch_size": (_INT(1), "an integer >= 1"),
    "eval.max_clips": (_OPTIONAL(_INT(1)), "None or an integer >= 1"),
    "eval.every_steps": (_INT(0), "an integer >= 0 (0 = off)"),
    "eval.num_segments": (_INT(1), "an integer >= 1"),
    "eval.moving_threshold": (lambda v: v >= 0, "a number >= 0"),
    "protocol.views": (lambda v: v in (1, 10), "1 (centre crop) or 10 (TSN's corners, centre and mirrors)"),
    "protocol.fusion_weights": (lambda v: len(v) in (0, 2) and all(w >= 0 for w in v) and (not v or sum(v) > 0),
                                "() for the recognizer's own rule, or (spatial, temporal) weights >= 0, not both 0"),
    "data.scale_jitter": (lambda v: all(0 < x <= 1 for x in v), "() or fractions in (0, 1]"),
    "data.patch_size": (_INT(0), "an integer >= 0 (0 = whole frame)"),
    "data.input_frames": (_INT(1), "an integer >= 1"),
    "data.clip_length": (_INT(1), "an integer >= 1"),
    "data.num_segments": (_INT(1), "an integer >= 1"),
    "data.flow_stack": (_INT(1), "an integer >= 1"),
    "data.crop_size": (_INT(0), "an integer >= 0"),
    "data.resize": (_INT(0), "an integer >= 0"),
    "data.lr_size": (_INT(0), "an integer >= 0"),
    "data.worker_count": (_INT(-1), "an integer >= 0, or -1 (auto)"),
    "data.read_threads": (_INT(1), "an integer >= 1"),
}


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming any key that the defaults do not know (typos would be ignored),
  a mode/task that does not exist, or a value that cannot work (``VALUE_RULES``)."""
  base = get_base_config()
  if config.get("mode", "train") not in MODES:
    raise ValueError(f"Unknown mode {config.mode!r}; use one of {MODES}")
  if config.get("task", "sr") not in TASKS:
    raise ValueError(f"Unknown task {config.task!r}; use one of {TASKS}")
  problems = []
  for key in config:
    if key not in base:
      new = renamed_key(key)
      problems.append(f"{key!r}" + (f" (renamed: use '{new}')" if new else ""))
      continue
    if key in FREE_SECTIONS and isinstance(config[key], ml_collections.ConfigDict):
      # Their consumers check their keys; a renamed key is named here, with its new name.
      problems += [f"'{key}.{sub}' (renamed: use '{renamed_key(f'{key}.{sub}')}')"
                   for sub in config[key] if renamed_key(f"{key}.{sub}")]
    if key in FREE_SECTIONS or not isinstance(base[key], ml_collections.ConfigDict):
      continue
    known = set(base[key]) | OPTIONAL_KEYS.get(key, set())
    for sub in config[key]:
      if sub not in known:
        new = renamed_key(f"{key}.{sub}")
        hint = difflib.get_close_matches(sub, known, n=1)
        problems.append(f"'{key}.{sub}'" + (f" (renamed: use '{new}')" if new else
                                            f" (did you mean '{key}.{hint[0]}'?)" if hint else ""))
  if problems:
    raise ValueError("Unknown config key(s): " + ", ".join(problems))
  bad = []
  for key, (test, want) in VALUE_RULES.items():
    section, _, leaf = key.rpartition(".")
    node = config[section] if section else config
    if leaf not in node:
      continue
    value = node[leaf]
    try:
      ok = bool(test(value))
    except TypeError:
      ok = False
    if not ok:
      bad.append(f"{key}={value!r} (must be {want})")
  if bad:
    raise ValueError("Invalid config value(s): " + "; ".join(bad))
