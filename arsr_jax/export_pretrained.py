"""``python -m arsr_jax.export_pretrained`` (as the README and console scripts name it): runs arsr_jax.studies.export_pretrained."""

import runpy

if __name__ == "__main__":
  runpy.run_module("arsr_jax.studies.export_pretrained", run_name="__main__", alter_sys=True)
