"""Jobs: what a task trains and evaluates, as a ``train.Job`` for the one training loop.

``sr``: SR recipes (every configs/<recipe>.py); ``recognition``: action
recognizers on HR clips. The recognition protocol is its own job,
``evaluation/protocol.run``. ``main.py`` dispatches on ``config.task``.
"""
