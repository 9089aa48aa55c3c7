"""`python -m experiments.plan`: will a student + teacher pairing fit a pod? Asked before the pod.

From the two config.json files alone: abstract params and caches placed by the sharding rules
(memory), the guided loop compiled ahead of time on fake CPU devices for its temporaries
(compiled), what would fit instead (advice), printed per device with a JSON last line (report).
Nothing here imports jax until the flags are read (cli), so the device count can still be set.
"""
