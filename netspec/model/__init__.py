"""The model room: the spec's layers as pure JAX functions, and what its loss means. Imports jax.

layers.py    each layer type's builder -> (init, apply); the activations and initializers
network.py   network(layers) -> (init, apply): the whole model, itself a layer
losses.py    the loss, the metrics, the labels and the predicted class, from the Spec
"""
