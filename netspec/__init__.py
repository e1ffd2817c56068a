"""netspec: a declarative model-spec compiler (YAML spec -> JAX training program -> TensorBoard run)."""

import time as _time

__version__ = "0.1.0"
STARTED = _time.perf_counter()  # for result.json's first_step_seconds (imports, data, compile, one step)
