"""Tests for netspec.machine: sizes in bytes read and written, and the memory budget a run is
checked against (NETSPEC_MEMORY_BUDGET, an address-space limit, the GPU's memory as nvidia-smi
reports it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from netspec.machine import BUDGET_ENV, Budget, _gpu_memory, format_bytes, memory_budget, parse_bytes


@pytest.mark.parametrize(
    "text, expected",
    [
        ("24GiB", 24 * 2**30),
        ("24 G", 24 * 2**30),
        ("8000MB", 8000 * 2**20),
        ("1e9", 10**9),
        ("512k", 512 * 2**10),
        ("1.5TiB", int(1.5 * 2**40)),
        ("", None),
        ("lots", None),
        ("-1G", None),
        ("0", None),
        ("inf", None),
        ("12 parsecs", None),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_format_bytes():
    assert [format_bytes(n) for n in (12, 1536, 2**40 * 8, 47 * 2**20 + 1)] == [
        "12 bytes",
        "1.5 KiB",
        "8 TiB",
        "47 MiB",
    ]


def test_the_budget_is_the_environment_variable_when_set(monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "80GiB")
    assert memory_budget() == Budget(80 * 2**30, f"{BUDGET_ENV}=80GiB", "device")
    monkeypatch.setenv(BUDGET_ENV, "plenty")  # not a size: the detected budget
    assert memory_budget().origin != f"{BUDGET_ENV}=plenty"


def test_the_host_budget_counts_an_address_space_limit():
    code = "from netspec import machine; b = machine.host_memory(); print(b.bytes, b.kind, b.origin)"
    limit = 3 * 2**30
    out = subprocess.run(
        [sys.executable, "-c", f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); {code}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    ).stdout.split(maxsplit=2)
    assert int(out[0]) == limit and out[1] == "address" and "ulimit -v" in out[2]
    unlimited = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(
        maxsplit=2
    )
    assert int(unlimited[0]) > limit or "cgroup" in unlimited[2]


def test_no_gpu_budget_on_a_cpu_platform(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert _gpu_memory() is None


def test_the_gpu_budget_from_nvidia_smi(tmp_path, monkeypatch):
    """With a CUDA plugin installed and JAX_PLATFORMS not leaving it out, the budget is GPU 0's
    memory as nvidia-smi reports it, times what XLA preallocates (a fake plugin and nvidia-smi)."""
    (tmp_path / "jax_cuda12_plugin").mkdir()
    (tmp_path / "jax_cuda12_plugin" / "__init__.py").write_text("")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771'\n")
    smi.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    budget = _gpu_memory()
    assert budget == Budget(
        int(143771 * 2**20 * 0.75),
        "0.75 of the memory of GPU 0 (NVIDIA H200, nvidia-smi), what XLA preallocates",
        "device",
    )
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    assert _gpu_memory().bytes == 143771 * 2**20
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert _gpu_memory() is None
    smi.write_text("#!/bin/sh\nexit 9\n")  # a broken driver: the host's memory instead
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert _gpu_memory() is None
