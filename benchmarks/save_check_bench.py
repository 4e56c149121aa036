"""What surfacing a failed asynchronous checkpoint save at the next step costs the train loop.

The loop calls ``checkpointing.check_saves(mngr)`` after every step (a failed save stops the run at
the next step instead of one checkpoint interval later). This times that call with no save pending
and while a save of a STATE_MB state is being written, and, for comparison, what the alternative
(``wait`` right after every save) would block the loop for at each checkpoint.

  python benchmarks/save_check_bench.py [--state_mb 64] [--calls 20000] [--saves 3]

Prints one JSON object: check_idle_us, check_in_flight_us (per call, median of rounds),
save_return_s (what ``save`` blocks the loop for, async), save_then_wait_s (save + wait: the
blocking alternative), per checkpoint.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from arsr_jax import checkpointing, config_lib  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--state_mb", type=float, default=64.0)
  p.add_argument("--calls", type=int, default=20000)
  p.add_argument("--saves", type=int, default=3)
  args = p.parse_args()
  config = config_lib.recipe("vdsr", "smoke")
  n = int(args.state_mb * 2**20 / 4)
  state = {"params": jnp.arange(n, dtype=jnp.float32) / n, "step": jnp.int32(0)}
  out = {"state_mb": args.state_mb, "device": str(jax.devices()[0].platform)}
  with tempfile.TemporaryDirectory() as workdir:
    mngr = checkpointing.manager(workdir, max_to_keep=2)

    def time_checks(calls):
      t = time.perf_counter()
      for _ in range(calls):
        checkpointing.check_saves(mngr)
      return (time.perf_counter() - t) / calls * 1e6

    out["check_idle_us"] = statistics.median(time_checks(args.calls) for _ in range(5))
    returns, waits, in_flight = [], [], []
    for i in range(args.saves):
      t = time.perf_counter()
      checkpointing.save(mngr, 2 * i + 1, state, None, config)
      returns.append(time.perf_counter() - t)
      if mngr.is_saving_in_progress():
        in_flight.append(time_checks(200))  # a few calls, while the write runs in the background
      checkpointing.wait(mngr)
      t = time.perf_counter()
      checkpointing.save(mngr, 2 * i + 2, state, None, config)
      checkpointing.wait(mngr)
      waits.append(time.perf_counter() - t)
    mngr.close()
  out.update(check_in_flight_us=statistics.median(in_flight) if in_flight else None,
             save_return_s=statistics.median(returns), save_then_wait_s=statistics.median(waits))
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
