"""A data file is untrusted too: a catalogue of hostile data files, each refused by `netspec
validate` and `netspec run` with exit 1, one paragraph naming the file and the rule or limit it
breaks, no traceback, in bounded time and memory (issue 12).

Devices, FIFOs, sockets and directories are refused before a byte is read; every size a file
states (an IDX or .npy header, a zip directory entry) is checked against the file's real size and
the read limit before anything is allocated; compressed streams are read only to their stated
size; a CSV line is bounded. Where memory is the point, the command runs as a subprocess under an
address-space cap (RLIMIT_AS) and its peak resident memory is measured (wait4).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support import netspec, validate

from netspec.data import formats as datasets
from netspec.errors import DataError

MiB, GiB = 2**20, 2**30

SPEC = """\
name: hostile_data
data:
{data}
model:
  input: [{width}]
  layers:
    - {{name: out, type: dense, units: 2, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: {{type: sgd, learning_rate: 0.1}}
train: {{steps: 2, batch_size: 2}}
"""


# -- making hostile files (independently of the module under test) -------------------------------


def idx_header(shape, code=0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npy_header(shape, dtype="<f4") -> bytes:
    """A version 1.0 .npy header claiming `shape`, with no data after it."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def zeros_into(f, n: int) -> None:
    block = bytes(16 * MiB)
    while n:
        f.write(block[: min(n, len(block))])
        n -= min(n, len(block))


def gzip_bomb(path: Path, claimed: tuple, inflated: int) -> Path:
    """A gzip IDX file: a uint8 header claiming `claimed`, then `inflated` zero bytes."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(idx_header(claimed))
        zeros_into(f, inflated)
    return path


def zip_bomb(path: Path, rows: int, width: int) -> Path:
    """An npz whose x.npy is rows x width float32 zeros, deflated, its sizes stated truly."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        info = zipfile.ZipInfo("x.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as f:
            f.write(npy_header((rows, width)))
            zeros_into(f, rows * width * 4)
        archive.writestr("y.npy", npy_bytes(np.arange(rows, dtype=np.int32) % 2))
    return path


def lying_zip(path: Path, inflated: int) -> Path:
    """An npz whose x.npy entry says it holds a small (2, 2) array, while its deflate stream holds
    `inflated` bytes: the size fields of both its headers are rewritten."""
    small = npy_bytes(np.zeros((2, 2), np.float32))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("y.npy", npy_bytes(np.array([0, 1], np.int32)))
        info = zipfile.ZipInfo("x.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as f:
            f.write(small)
            zeros_into(f, inflated - len(small))
    data = bytearray(path.read_bytes())
    for marker, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        start = 0
        while (at := data.find(marker, start)) >= 0:
            start = at + 4
            name_len, extra_len = struct.unpack_from("<HH", data, at + name_len_at)
            if bytes(data[at + name_at : at + name_at + name_len]) != b"x.npy":
                continue
            if struct.unpack_from("<I", data, at + size_at)[0] != 0xFFFFFFFF:
                struct.pack_into("<I", data, at + size_at, len(small))
                continue
            e = at + name_at + name_len
            while e < at + name_at + name_len + extra_len:  # the zip64 extra field: the uncompressed size first
                tag, size = struct.unpack_from("<HH", data, e)
                if tag == 1:
                    struct.pack_into("<Q", data, e + 4, len(small))
                e += 4 + size
    path.write_bytes(bytes(data))
    return path


def idx_dir(path: Path, *, images=None, labels=None) -> Path:
    """An IDX directory with two 28x28 images and labels 0, 1, unless `images` or `labels` (a
    function of the target path) puts something else there."""
    path.mkdir()
    target = path / "train-images-idx3-ubyte"
    images(target) if images else target.write_bytes(idx_header((2, 28, 28)) + bytes(2 * 784))
    target = path / "train-labels-idx1-ubyte"
    labels(target) if labels else target.write_bytes(idx_header((2,)) + bytes([0, 1]))
    return path


def linked(to: str):
    return lambda target: target.symlink_to(to)


def fifo(target: Path) -> None:
    os.mkfifo(target)


def write_spec(tmp: Path, data: str, width: int) -> Path:
    spec = tmp / "spec.yaml"
    spec.write_text(SPEC.format(data=data, width=width))
    return spec


# -- the catalogue -------------------------------------------------------------------------------
# id -> (make(tmp) -> (data section, input width), words the message holds). Each is refused by
# validate; `run` (which checks first) refuses it the same way.


def _csv(path) -> str:
    return f"  csv: {{path: {path}, label: 0, header: false}}"


def _make_fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe")
    return tmp / "pipe"


def _symlink(tmp: Path, to: str, name: str) -> Path:
    (tmp / name).symlink_to(to)
    return tmp / name


def _lying_npz(tmp: Path, x_shape=(2**40, 2), y=None) -> Path:
    with zipfile.ZipFile(tmp / "lying.npz", "w") as archive:
        archive.writestr("x.npy", npy_header(x_shape) + bytes(16))
        archive.writestr("y.npy", y if y is not None else npy_bytes(np.array([0, 1], np.int32)))
    return tmp / "lying.npz"


NOT_REGULAR = "not a regular file. netspec reads data only from regular files"
CASES = {
    "npz_dev_zero": (lambda tmp: ("  npz: {path: /dev/zero}", 2), ["/dev/zero: is a character device", NOT_REGULAR]),
    "csv_dev_zero": (lambda tmp: (_csv("/dev/zero"), 2), ["/dev/zero: is a character device", NOT_REGULAR]),
    "npz_dev_urandom": (
        lambda tmp: ("  npz: {path: /dev/urandom}", 2),
        ["/dev/urandom: is a character device", NOT_REGULAR],
    ),
    "csv_dev_urandom": (lambda tmp: (_csv("/dev/urandom"), 2), ["/dev/urandom: is a character device", NOT_REGULAR]),
    "csv_fifo": (lambda tmp: (_csv(_make_fifo(tmp)), 2), ["pipe: is a FIFO (named pipe)", NOT_REGULAR]),
    "npz_fifo": (lambda tmp: (f"  npz: {{path: {_make_fifo(tmp)}}}", 2), ["pipe: is a FIFO (named pipe)", NOT_REGULAR]),
    "csv_symlink_to_dev_zero": (
        lambda tmp: (_csv(_symlink(tmp, "/dev/zero", "data.csv")), 2),
        ["data.csv (a symlink to /dev/zero): is a character device", NOT_REGULAR],
    ),
    "csv_directory": (lambda tmp: (_csv(tmp), 2), ["is a directory, but a CSV file was expected"]),
    "npz_directory": (lambda tmp: (f"  npz: {{path: {tmp}}}", 2), ["is a directory, but an .npz archive was expected"]),
    "idx_path_is_a_device": (
        lambda tmp: ("  idx: {path: /dev/zero}", 784),
        ["/dev/zero: is a character device, not a directory"],
    ),
    "idx_images_symlink_to_dev_zero": (
        lambda tmp: (f"  idx: {{path: {idx_dir(tmp / 'd', images=linked('/dev/zero'))}}}", 784),
        ["train-images-idx3-ubyte (a symlink to /dev/zero): is a character device", NOT_REGULAR],
    ),
    "idx_images_fifo": (
        lambda tmp: (f"  idx: {{path: {idx_dir(tmp / 'd', images=fifo)}}}", 784),
        ["train-images-idx3-ubyte: is a FIFO", NOT_REGULAR],
    ),
    "idx_labels_symlink_to_dev_urandom": (
        lambda tmp: (f"  idx: {{path: {idx_dir(tmp / 'd', labels=linked('/dev/urandom'))}}}", 784),
        ["train-labels-idx1-ubyte (a symlink to /dev/urandom): is a character device"],
    ),
    "npz_header_claims_2^40_rows": (
        lambda tmp: (f"  npz: {{path: {_lying_npz(tmp)}}}", 2),
        [
            "lying.npz: array 'x': its header says shape (1099511627776, 2) of float32, 8 TiB",
            "the archive holds 16 bytes of data for it",
        ],
    ),
    "npz_label_header_claims_2^40": (
        lambda tmp: (f"  npz: {{path: {_lying_npz(tmp, (2, 2), npy_header((2**40,), '<i4') + bytes(8))}}}", 2),
        ["array 'y': its header says shape (1099511627776,) of int32, 4 TiB", "holds 8 bytes"],
    ),
    "npz_zip_bomb_lying_directory": (
        lambda tmp: (f"  npz: {{path: {lying_zip(tmp / 'bomb.npz', 64 * MiB)}}}", 2),
        ["bomb.npz: array 'x' cannot be read", "Bad CRC-32"],
    ),
    "idx_gzip_header_claims_4GiB": (
        lambda tmp: (
            f"  idx: {{path: {idx_dir(tmp / 'd', images=lambda t: gzip_bomb(Path(str(t) + '.gz'), (2**22, 32, 32), MiB))}}}",
            1024,
        ),
        ["train-images-idx3-ubyte.gz: truncated or damaged", "4294967296 bytes of data", "holds at most", "1032:1"],
    ),
    "idx_gzip_bomb_in_the_labels": (
        lambda tmp: (
            f"  idx: {{path: {idx_dir(tmp / 'd', labels=lambda t: gzip_bomb(Path(str(t) + '.gz'), (2,), 64 * MiB))}}}",
            784,
        ),
        [
            "train-labels-idx1-ubyte.gz: wrong element count",
            f"more than {2 + MiB} bytes follow it (reading stopped there)",
        ],
    ),
    "csv_line_of_16M_columns": (
        lambda tmp: (_csv(_wide_csv(tmp / "wide.csv", 16 * MiB)), 2),
        ["wide.csv:1: a line of more than 8388608 characters (reading stopped there)", "one example per line"],
    ),
}


def _wide_csv(path: Path, columns: int) -> Path:
    with open(path, "wb") as f:
        f.write(b"," * columns + b"\n")
    return path


def one_paragraph(result, spec: Path, words, command: str = "validate") -> str:
    """The one problem's message: validate lists it under '<spec>: 1 problem', run prints it alone."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # anything else is a traceback
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    if command == "validate":
        assert lines[0] == f"{spec}: 1 problem", result.output[:800]
        lines = lines[1:]
    assert len(lines) == 1, result.output[:2000]
    message = lines[0].strip()
    assert message.startswith(f"{spec}:3:"), message[:300]  # at data.<source>, in the spec
    for word in words:
        assert word in message, message
    assert len(message) < 1200
    return message


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_hostile_data_file_is_refused(case, command, tmp_path):
    make, words = CASES[case]
    (tmp_path / "spec").mkdir()
    data, width = make(tmp_path)
    spec = write_spec(tmp_path / "spec", data, width)
    args = [command, str(spec)] + (["--logdir", str(tmp_path / "runs"), "--quiet"] if command == "run" else [])
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = netspec(*args)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_paragraph(result, spec, words, command)
    assert elapsed < 10, f"refusing took {elapsed:.1f} s"
    assert peak < 48 * MiB, f"refusing took {peak / MiB:.0f} MiB"  # the 8 Mi-character CSV line is the most
    assert not (tmp_path / "runs").exists()


def test_the_catalogue_covers_the_issue():
    kinds = " ".join(CASES)
    for kind in (
        "dev_zero",
        "dev_urandom",
        "fifo",
        "symlink",
        "directory",
        "header_claims",
        "zip_bomb",
        "gzip",
        "csv_line",
    ):
        assert kind in kinds, kind


def test_a_gzip_bomb_behind_an_honest_looking_header_is_read_only_to_its_size(tmp_path):
    """validate reads only the images' header; run reads the images, and stops one slack past
    the two images the header states."""
    d = idx_dir(tmp_path / "d", images=lambda t: gzip_bomb(Path(str(t) + ".gz"), (2, 28, 28), 64 * MiB))
    spec = write_spec(tmp_path, f"  idx: {{path: {d}}}", 784)
    assert validate(spec).exit_code == 0
    tracemalloc.start()
    try:
        result = netspec("run", spec, "--logdir", tmp_path / "runs", "--quiet")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "train-images-idx3-ubyte.gz: wrong element count" in result.output
    assert f"more than {2 * 784 + MiB} bytes follow it (reading stopped there)" in result.output
    assert peak < 16 * MiB, f"{peak / MiB:.0f} MiB"
    assert not (tmp_path / "runs").exists()


# -- the readers themselves ------------------------------------------------------------------------


def test_open_data_file_refuses_a_socket(tmp_path):
    import socket

    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        with pytest.raises(DataError, match="is a socket, not a regular file"):
            datasets.open_data_file(path)
    finally:
        server.close()


def test_a_file_over_the_read_limit_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "1,2\n" * 1000)
    monkeypatch.setattr(datasets, "MAX_DATA_BYTES", 1000)
    with pytest.raises(DataError) as info:
        datasets.load_csv(path, label="b")
    assert "holds 3.91 KiB of data (4004 bytes), more than netspec reads from one data file" in str(info.value)
    assert "netspec's limit for one data file, 1000 bytes" in str(info.value)


def test_an_idx_header_over_the_read_limit_is_refused_before_allocating(tmp_path, monkeypatch):
    path = tmp_path / "x.gz"
    gzip_bomb(path, (1000, 100), 1000 * 100)
    monkeypatch.setattr(datasets, "MAX_DATA_BYTES", 50_000)
    for read in (datasets.idx_header, datasets.read_idx):
        with pytest.raises(
            DataError, match=r"its header says shape \(1000, 100\) of uint8, 100000 bytes of data: 97.7 KiB"
        ):
            read(path)


def test_a_raw_idx_file_is_sized_from_its_header_without_reading(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(idx_header((2**31, 2**20)) + bytes(8))
    with pytest.raises(DataError, match="its header says shape"):  # 2 PiB: past the limit, not allocated
        datasets.idx_header(path)
    path.write_bytes(idx_header((3, 5)) + bytes(14))
    with pytest.raises(
        DataError, match=re.escape("truncated: the header says shape (3, 5) of uint8, 15 bytes of data, but only 14")
    ):
        datasets.idx_header(path)


def test_a_file_that_shrinks_while_it_is_read(tmp_path, monkeypatch):
    """The size is taken when the file is opened; a file cut short after that reads as truncated."""
    path = tmp_path / "x"
    path.write_bytes(idx_header((100, 1000)) + bytes(100_000))  # larger than the reader's buffer
    real = datasets._read_exactly

    def shrink_first(f, buffer):
        os.truncate(path, 50_000)
        return real(f, buffer)

    monkeypatch.setattr(datasets, "_read_exactly", shrink_first)
    with pytest.raises(
        DataError,
        match=r"truncated: the header says shape \(100, 1000\) of uint8, 100000 bytes of data, but only 49988",
    ):
        datasets.read_idx(path)


def test_an_npz_that_shrinks_while_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((200, 50), np.float32), y=np.arange(200) % 2)
    real = datasets.read_npz_array

    def shrink_first(archive, header, p):
        os.truncate(path, 3000)
        return real(archive, header, p)

    monkeypatch.setattr(datasets, "read_npz_array", shrink_first)
    with pytest.raises(DataError, match="cannot be read: the archive is damaged or cut short"):
        datasets.load_npz(path)


def test_an_npz_of_too_many_members_is_refused_before_its_directory_is_read(tmp_path, monkeypatch):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(20):
            archive.writestr(f"a{i}.npy", npy_bytes(np.zeros(1)))
    monkeypatch.setattr(datasets, "MAX_NPZ_MEMBERS", 10)
    with pytest.raises(
        DataError, match=re.escape("the archive says it holds 20 members; netspec reads .npz archives of at most 10")
    ):
        datasets.load_npz(path)


def test_a_long_csv_line_below_the_limit_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_LINE_CHARS", 64)
    path = tmp_path / "t.csv"
    path.write_text("a,b\n" + "1," + "2" * 62 + "\n")  # 64 characters and the line break
    assert datasets.load_csv(path, label="a").x.shape == (1, 1)
    path.write_text("a,b\n" + "1," + "2" * 63 + "\n")
    with pytest.raises(DataError, match=r"t\.csv:2: a line of more than 64 characters"):
        datasets.load_csv(path, label="a")


def test_csv_reads_as_a_stream_into_float32(tmp_path):
    rows = 20_000
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,label\n" + "".join(f"{i},{i * 0.5},{-i},{'cat' if i % 3 else 'dog'}\n" for i in range(rows)))
    tracemalloc.start()
    try:
        table = datasets.load_csv(path, label="label")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert table.x.shape == (rows, 3) and table.x.dtype == np.float32 and table.x.flags.writeable
    assert table.classes == ("cat", "dog") and table.y[:3].tolist() == [1, 0, 0]
    assert peak < 4 * MiB, (
        f"{peak / MiB:.1f} MiB for {rows * 3 * 4 / MiB:.2f} MiB of features"
    )  # not a list of rows of strings


# -- under a memory cap, in a subprocess -----------------------------------------------------------

# Sets the cap, then runs netspec as its own child and reports that child's peak resident memory:
# a child forked straight from this (large) test process would count this process's pages, shared
# until its exec, in its peak. A wrapper, not a preexec_fn: this process runs JAX's threads, and
# Python code between fork and exec could deadlock on them.
WRAPPER = """\
import os, resource, sys
cap, report = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "netspec.cli", *sys.argv[3:]])
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def capped(args: list[str], cap: int, timeout: float = 120) -> tuple[int | str, float, float, str]:
    """(exit status or 'timeout', seconds, peak resident MiB, output) of `python -m netspec.cli
    *args` run under an address-space cap."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "NETSPEC_OFFLINE": "1", "NETSPEC_JAX_CACHE": ""}
    env.pop("NETSPEC_MEMORY_BUDGET", None)
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"capped-{os.getpid()}-{threading.get_ident()}"
    report = Path(f"{base}.peak")
    with open(f"{base}.log", "w+b") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(cap), str(report), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = "timeout"
        elapsed = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    os.unlink(f"{base}.log")
    peak = int(report.read_text()) / 1024 if report.exists() else float("nan")
    report.unlink(missing_ok=True)
    return status, elapsed, peak, text


def assert_refused(result, *words, peak_mib: float, seconds: float) -> None:
    status, elapsed, peak, text = result
    assert status == 1, (status, text[-2000:])
    assert "Traceback" not in text and "unexpectedly" not in text, text[-2000:]
    assert len([line for line in text.splitlines() if line.strip()]) <= 2, text[-2000:]  # "<spec>: 1 problem" and it
    for word in words:
        assert word in text, text[-2000:]
    assert peak < peak_mib, f"peak {peak:.0f} MiB"
    assert elapsed < seconds, f"{elapsed:.1f} s"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_validate_on_a_device_under_a_memory_cap(tmp_path, device):
    spec = write_spec(tmp_path, _csv(device), 2)  # before: 6 GB and a MemoryError traceback
    assert_refused(
        capped(["validate", str(spec)], 1 * GiB), f"{device}: is a character device", peak_mib=150, seconds=20
    )


def test_validate_on_a_fifo_under_a_memory_cap(tmp_path):
    spec = write_spec(tmp_path, _csv(_make_fifo(tmp_path)), 2)  # before: it waited for a writer forever
    assert_refused(capped(["validate", str(spec)], 1 * GiB, timeout=60), "pipe: is a FIFO", peak_mib=150, seconds=20)


@pytest.mark.slow  # writes a 1 GB file
def test_a_billion_columns_on_one_line_under_a_memory_cap(tmp_path):
    path = _wide_csv(tmp_path / "wide.csv", 10**9)  # before: MemoryError after 3.9 GB
    spec = write_spec(tmp_path, _csv(path), 2)
    assert_refused(
        capped(["validate", str(spec)], 1 * GiB),
        "wide.csv:1: a line of more than 8388608 characters",
        peak_mib=150,
        seconds=30,
    )
    assert_refused(
        capped(["run", str(spec), "--logdir", str(tmp_path / "runs"), "--quiet"], 3 * GiB),
        "wide.csv:1: a line of more than",
        peak_mib=400,
        seconds=60,
    )


@pytest.mark.slow  # compresses 1 GiB
def test_an_honest_zip_bomb_is_refused_by_the_memory_budget(tmp_path):
    """1 GiB of float32 zeros in 1 MB of npz: data, not a lie, and more than 3 GiB of address
    space holds with the JAX runtime beside it; refused from its headers, never inflated."""
    path = zip_bomb(tmp_path / "bomb.npz", rows=2**18, width=1024)
    assert path.stat().st_size < 8 * MiB
    spec = write_spec(tmp_path, f"  npz: {{path: {path}}}", 1024)
    words = (
        "training this spec needs at least",
        "more than the budget of 3 GiB (the process's address-space limit, ulimit -v;",
        "the training data (262144 examples) 1 GiB",
    )
    assert_refused(capped(["validate", str(spec)], 3 * GiB), *words, peak_mib=150, seconds=30)
    assert_refused(
        capped(["run", str(spec), "--logdir", str(tmp_path / "runs"), "--quiet"], 3 * GiB),
        *words,
        peak_mib=400,
        seconds=60,
    )


@pytest.mark.slow  # compresses 1 GiB, and runs
def test_an_idx_gzip_bomb_under_a_memory_cap(tmp_path):
    """1 GiB behind a header of 2 images: before, refused only after 2.2 GB of memory."""
    d = idx_dir(tmp_path / "d", images=lambda t: gzip_bomb(Path(str(t) + ".gz"), (2, 28, 28), GiB))
    spec = write_spec(tmp_path, f"  idx: {{path: {d}}}", 784)
    assert_refused(
        capped(["run", str(spec), "--logdir", str(tmp_path / "runs"), "--quiet"], 3 * GiB),
        "wrong element count",
        "(reading stopped there)",
        peak_mib=400,
        seconds=60,
    )


@pytest.mark.slow  # runs
def test_an_npz_header_of_2_to_the_40_rows_under_a_memory_cap(tmp_path):
    spec = write_spec(tmp_path, f"  npz: {{path: {_lying_npz(tmp_path)}}}", 2)  # before: "Unable to allocate 8.00 TiB"
    assert_refused(
        capped(["run", str(spec), "--logdir", str(tmp_path / "runs"), "--quiet"], 3 * GiB),
        "its header says shape (1099511627776, 2) of float32, 8 TiB",
        peak_mib=400,
        seconds=60,
    )
