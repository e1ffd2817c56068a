"""netspec: a declarative model-spec compiler (YAML spec -> JAX training program -> TensorBoard run)."""

__version__ = "0.1.0"
