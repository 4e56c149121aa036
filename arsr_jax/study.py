"""``python -m arsr_jax.study`` (as the README and console scripts name it): runs arsr_jax.studies.study."""

import runpy

if __name__ == "__main__":
  runpy.run_module("arsr_jax.studies.study", run_name="__main__", alter_sys=True)
