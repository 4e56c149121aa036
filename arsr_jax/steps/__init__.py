"""Pure step functions: (state, batch, frozen, rng) -> (state, metrics), and eval steps.

``state``: the TrainState and the update shared by every trained network;
``sr``: SR train/eval steps; ``recognition``: recognizer train/eval steps;
``protocol``: the recognition protocol's per-method computations.
No I/O and no device placement here: jobs jit these with shardings.
"""
