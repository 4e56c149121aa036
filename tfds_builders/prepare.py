"""Prepares a manual-download video data set: per-video cache (resumable, shardable), then build.

  python -m tfds_builders.prepare --dataset ucf101_sr/split1 --manual_dir DIR --data_dir DIR
      [--workers P] [--num_shards N --shard_index I] [--cache_dir DIR] [--clean_cache]

With --num_shards N > 1 this only fills the per-video cache for shard I (every
N-th video): run one shard per machine (on a shared cache_dir, or copy the
caches together), then once without --num_shards to prepare whatever is still
missing and write the array_record files. Re-running skips cached videos.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from absl import logging
import tensorflow_datasets as tfds

import tfds_builders


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m tfds_builders.prepare",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", required=True, help="name/config, e.g. ucf101_sr/split1")
  parser.add_argument("--manual_dir", required=True, help="folder with the downloaded data")
  parser.add_argument("--data_dir", required=True, help="TFDS data directory (output)")
  parser.add_argument("--workers", type=int, default=None,
                      help="decoding processes (default min(8, CPUs - 1); 0 = in process)")
  parser.add_argument("--num_shards", type=int, default=1, help="machines sharing the videos")
  parser.add_argument("--shard_index", type=int, default=0, help="this machine's shard")
  parser.add_argument("--cache_dir", default=None, help="per-video cache root "
                      "(default DATA_DIR/_prep_cache)")
  parser.add_argument("--clean_cache", action="store_true",
                      help="delete this config's per-video cache after a successful build")
  return parser


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  logging.set_verbosity(logging.INFO)
  try:
    prepare(**vars(args))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


def prepare(dataset: str, manual_dir: str, data_dir: str, workers: int | None = None, num_shards: int = 1,
            shard_index: int = 0, cache_dir: str | None = None, clean_cache: bool = False) -> None:
  """The command as a function (flags as arguments); ValueError (before anything is written) for a
  name that is not a project dataset/config or a missing or empty ``manual_dir``."""
  args = argparse.Namespace(dataset=dataset, manual_dir=manual_dir, data_dir=data_dir, workers=workers,
                            num_shards=num_shards, shard_index=shard_index, cache_dir=cache_dir,
                            clean_cache=clean_cache)
  _check(args)
  tfds_builders.load(args.dataset)
  builder = tfds.builder(args.dataset, data_dir=args.data_dir, file_format="array_record",
                         workers=args.workers, cache_dir=args.cache_dir)
  start = time.perf_counter()
  if args.num_shards > 1:
    stats = builder.prepare_cache(args.manual_dir, num_shards=args.num_shards,
                                  shard_index=args.shard_index)
    print(f"{args.dataset}: shard {args.shard_index}/{args.num_shards}: {stats.total} videos, "
          f"{stats.cached} were cached, {stats.computed} prepared ({stats.skipped} skipped) in "
          f"{stats.seconds:.1f} s; cache at {builder.cache.root}", file=sys.stderr)
    return
  if builder.is_prepared():
    print(f"{args.dataset} is already prepared in {builder.data_dir}", file=sys.stderr)
  else:
    config = tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    tfds_builders.progress_bars_on_terminal_only()
    builder.download_and_prepare(download_config=config)
  splits = {name: split.num_examples for name, split in builder.info.splits.items()}
  skipped = builder.info.metadata.get("num_skipped", 0)
  print(f"{args.dataset}: {splits} examples in {builder.data_dir} ({skipped} videos skipped, "
        f"see skipped.json) after {time.perf_counter() - start:.1f} s", file=sys.stderr)
  if args.clean_cache:
    shutil.rmtree(builder.cache.root, ignore_errors=True)


def _check(args: argparse.Namespace) -> None:
  """Refuses, before anything is written, a name that is not a project dataset/config or a
  manual_dir that is missing or empty."""
  dataset = args.dataset.split("/")[0]
  if dataset not in tfds_builders.BUILDERS:
    raise ValueError(f"--dataset {args.dataset}: not one of this project's datasets "
                     f"({', '.join(tfds_builders.BUILDERS)})")
  tfds_builders.check_name(args.dataset)
  if dataset == "synthetic_actions":  # generated: needs no manual_dir
    return
  if not os.path.isdir(args.manual_dir):
    raise ValueError(f"--manual_dir {args.manual_dir} is not a folder; put the downloaded {dataset} data "
                     "there (see tfds_builders/README.md)")
  if not os.listdir(args.manual_dir):
    raise ValueError(f"--manual_dir {args.manual_dir} is empty; put the downloaded {dataset} data there "
                     "(see tfds_builders/README.md)")


if __name__ == "__main__":
  sys.exit(main())
