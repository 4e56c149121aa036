"""The project's studies: the papers' claims and our own questions, each one command, on top of the library.

  study            the ICCV'19 paper's Table 3 claims on the embedded synthetic_actions data
  tinyvirat_study  TinyVIRAT's Tables II / V protocol: a classifier trained on each SR method's outputs
  real_study       real videos: Kinetics-400 I3D agreement with HR after 4x / 8x SR (SoSR, ToSR, DVSR)
  corpus_study     issue 13: four objectives on one small VDSR, judged by I3D on two held-out sets
  real_judge       the frozen I3D judging of real-video windows shared by real_study and corpus_study
  export_pretrained  the shipped models (arsr_jax/pretrained/) from a finished corpus study

Run each with ``python -m arsr_jax.studies.<name>``. Nothing in the library imports this package
(tests/test_layers.py).
"""
