"""The compile room: a checked Spec -> a Program of pure, jitted JAX functions. Imports jax.

program.py   compile_spec(spec, mesh) -> Program: wiring only
state.py     TrainState, LossScale, Keys, Data, ChunkOutputs: what flows through the program
optim.py     the spec's optimizer as optax's transformation, its learning rate injected
step.py      one training step, from a StepConfig made once
chunk.py     K steps as one compiled call, evaluation, and how a chunk runs on this backend
"""
