"""``python -m arsr_jax.tinyvirat_study`` (as the README and console scripts name it): runs arsr_jax.studies.tinyvirat_study."""

import runpy

if __name__ == "__main__":
  runpy.run_module("arsr_jax.studies.tinyvirat_study", run_name="__main__", alter_sys=True)
