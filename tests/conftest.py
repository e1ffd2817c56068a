"""What pytest sets up for every test (it loads this file first): Hypothesis's profiles and JAX's
compilation cache in a temporary directory. Helpers a test imports by name are in support.py."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Hypothesis explores new inputs on every local run (an unseeded run found a position bug in
# load.parse); in CI it is derandomized, so a submission passes or fails on its own merits, and a
# failure prints the example's blob to reproduce it. HYPOTHESIS_PROFILE picks either anywhere.
# A test's own @settings(max_examples=...) keeps the loaded profile's derandomize: settings made
# after this line start from it.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "explore"))


@pytest.fixture(autouse=True, scope="session")
def _jax_cache_in_a_temporary_directory(tmp_path_factory):
    """Tests never write JAX's compilation cache into the user's home: NETSPEC_JAX_CACHE (netspec's
    own setting, train.loop.use_compilation_cache) names a temporary directory, for this process
    and every `netspec` a test starts (they inherit the environment). Set outside, it is kept
    (empty: no cache at all)."""
    if "NETSPEC_JAX_CACHE" not in os.environ:
        os.environ["NETSPEC_JAX_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    yield
