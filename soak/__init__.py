"""The fault soak: ``python -m soak`` (``tox -e soak``).

A seeded, model-based random walk through the driver API as Cinder calls
it -- threads, two driver instances per back end on one SR (an
active-active cluster), on nfs, lvmoiscsi behind CHAP and SolidFire --
with faults injected at random calls of every kind the simulators know.
Then faults off, a converge phase that retries what failed as a user
would, and a verification that storage holds exactly the live objects of
the model, each of the right size, tag and content; then everything is
deleted and storage must be empty. No password may appear in any log line
or error. Prints ``soak: N ops, F faults, L leaked, W wrong`` and fails
unless L and W are 0.

``model``: what the soak believes and the checker; ``world``: the
simulator, the drivers and reading storage; ``walk``: the run itself.
"""
