"""Hostile data files through `netspec validate` and `netspec run`: peak memory, time, outcome.

    python benchmarks/hostile_data.py [--cap 4GiB] [--timeout 60] [--only NAME ...] [--markdown FILE]

Makes every hostile data file of issue 12 in a temporary directory (devices, a FIFO, a symlink to
a device, a directory, an npz whose header lies, zip and gzip bombs, a CSV line of a billion
columns), points a small spec at each, and runs `netspec validate` and `netspec run --quiet` on
it as a subprocess under an address-space cap (`prlimit --as`) and a wall-clock timeout. Reports
for each: exit status, wall seconds, the child's peak resident memory (`wait4`'s ru_maxrss) and
the first line of its message (or "Traceback" when one was printed). The caller runs it twice, on
the code before and after a change, to fill the table in RESULTS.md.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from capped import run_capped

ROOT = Path(__file__).resolve().parent.parent
GiB = 2**30

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


def idx_header(shape, code=0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npy_header_only(shape, dtype="<f4") -> bytes:
    """A .npy header claiming `shape`, with no data after it."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def write_zip_bomb(path: Path, rows: int, width: int) -> None:
    """An npz whose x.npy is rows x width float32 zeros, deflated (honest zip directory); y small."""
    header = npy_header_only((rows, width))
    size = len(header) + rows * width * 4
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        info = zipfile.ZipInfo("x.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as f:
            f.write(header)
            block = bytes(2**24)
            left = size - len(header)
            while left:
                n = min(len(block), left)
                f.write(block[:n])
                left -= n
        archive.writestr("y.npy", npy_bytes(np.arange(rows, dtype=np.int32) % 2))


def write_lying_zip(path: Path, inflated: int) -> None:
    """An npz whose x.npy member's directory entry says 128 bytes, but whose deflate stream holds
    `inflated` bytes (a small .npy header, then zeros)."""
    small = npy_bytes(np.zeros((2, 2), np.float32))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("y.npy", npy_bytes(np.array([0, 1], np.int32)))
        info = zipfile.ZipInfo("x.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as f:
            f.write(small)
            block = bytes(2**24)
            left = inflated - len(small)
            while left:
                n = min(len(block), left)
                f.write(block[:n])
                left -= n
    # rewrite x.npy's uncompressed size, in its local header and its central-directory entry, to the small one
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
            while e < at + name_at + name_len + extra_len:  # zip64 extra: the uncompressed size comes first
                tag, size = struct.unpack_from("<HH", data, e)
                if tag == 1:
                    struct.pack_into("<Q", data, e + 4, len(small))
                e += 4 + size
    path.write_bytes(bytes(data))


def write_gzip_bomb(path: Path, claimed: tuple, inflated: int) -> None:
    """A gzip IDX file: a header claiming `claimed` uint8, then `inflated` zero bytes."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(idx_header(claimed))
        block = bytes(2**24)
        left = inflated
        while left:
            n = min(len(block), left)
            f.write(block[:n])
            left -= n


def make_cases(tmp: Path) -> dict[str, tuple[str, int]]:
    """name -> (the spec's data section, model input width)."""
    cases = {}
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    (tmp / "zero_link.csv").symlink_to("/dev/zero")
    (tmp / "a_directory").mkdir()
    for device in ("/dev/zero", "/dev/urandom"):
        short = Path(device).name
        cases[f"npz_{short}"] = (f"  npz: {{path: {device}}}", 2)
        cases[f"csv_{short}"] = (f"  csv: {{path: {device}, label: 0, header: false}}", 2)
    cases["npz_fifo"] = (f"  npz: {{path: {fifo}}}", 2)
    cases["csv_fifo"] = (f"  csv: {{path: {fifo}, label: 0, header: false}}", 2)
    cases["csv_symlink_to_dev_zero"] = (f"  csv: {{path: {tmp / 'zero_link.csv'}, label: 0, header: false}}", 2)
    cases["csv_directory"] = (f"  csv: {{path: {tmp / 'a_directory'}, label: 0}}", 2)
    cases["npz_directory"] = (f"  npz: {{path: {tmp / 'a_directory'}}}", 2)
    cases["idx_path_is_a_device"] = ("  idx: {path: /dev/zero}", 784)
    for name, target in (("idx_images_dev_zero", "/dev/zero"), ("idx_images_fifo", str(fifo))):
        d = tmp / name
        d.mkdir()
        (d / "train-images-idx3-ubyte").symlink_to(target)
        (d / "train-labels-idx1-ubyte").write_bytes(idx_header((2,)) + bytes([0, 1]))
        cases[name] = (f"  idx: {{path: {d}}}", 784)
    d = tmp / "idx_labels_dev_urandom"
    d.mkdir()
    (d / "train-images-idx3-ubyte").write_bytes(idx_header((2, 28, 28)) + bytes(2 * 784))
    (d / "train-labels-idx1-ubyte").symlink_to("/dev/urandom")
    cases["idx_labels_dev_urandom"] = (f"  idx: {{path: {d}}}", 784)

    lying = tmp / "lying_header.npz"
    with zipfile.ZipFile(lying, "w") as archive:
        archive.writestr("x.npy", npy_header_only((2**40, 2)) + bytes(16))
        archive.writestr("y.npy", npy_bytes(np.array([0, 1], np.int32)))
    cases["npz_header_claims_2^40_rows"] = (f"  npz: {{path: {lying}}}", 2)
    lying_y = tmp / "lying_label_header.npz"
    with zipfile.ZipFile(lying_y, "w") as archive:
        archive.writestr("x.npy", npy_bytes(np.zeros((2, 2), np.float32)))
        archive.writestr("y.npy", npy_header_only((2**40,), "<i4") + bytes(8))
    cases["npz_label_header_claims_2^40"] = (f"  npz: {{path: {lying_y}}}", 2)

    bomb = tmp / "zip_bomb.npz"
    write_zip_bomb(bomb, rows=2**18, width=1024)  # 1 GiB of float32 zeros, ~1 MB deflated
    cases["npz_zip_bomb_1GiB"] = (f"  npz: {{path: {bomb}}}", 1024)
    liar = tmp / "zip_bomb_lying_directory.npz"
    write_lying_zip(liar, GiB)
    cases["npz_zip_bomb_lying_directory"] = (f"  npz: {{path: {liar}}}", 2)

    d = tmp / "idx_gzip_bomb"
    d.mkdir()
    write_gzip_bomb(d / "train-images-idx3-ubyte.gz", (2, 28, 28), GiB)  # 1 GiB behind a header of 2 images
    (d / "train-labels-idx1-ubyte").write_bytes(idx_header((2,)) + bytes([0, 1]))
    cases["idx_gzip_bomb_1GiB"] = (f"  idx: {{path: {d}}}", 784)
    d = tmp / "idx_gzip_bomb_labels"
    d.mkdir()
    (d / "train-images-idx3-ubyte").write_bytes(idx_header((2, 28, 28)) + bytes(2 * 784))
    write_gzip_bomb(d / "train-labels-idx1-ubyte.gz", (2,), GiB)
    cases["idx_gzip_bomb_labels_1GiB"] = (f"  idx: {{path: {d}}}", 784)
    d = tmp / "idx_gzip_claims_4GiB"
    d.mkdir()
    write_gzip_bomb(d / "train-images-idx3-ubyte.gz", (2**22, 32, 32), 2**20)  # claims 4 GiB, holds 1 MiB
    (d / "train-labels-idx1-ubyte").write_bytes(idx_header((2**22,)) + bytes([0, 1]) * 2**21)
    cases["idx_gzip_header_claims_4GiB"] = (f"  idx: {{path: {d}}}", 1024)

    wide = tmp / "billion_columns.csv"
    with open(wide, "wb") as f:
        block = b"1," * 2**23
        for _ in range(10**9 // 2**23 + 1):
            f.write(block)
        f.write(b"1\n")
    cases["csv_billion_columns_one_line"] = (f"  csv: {{path: {wide}, label: 0, header: false}}", 2)
    return cases


def run_one(cmd: list[str], cap: int, timeout: float) -> dict:
    """Runs `cmd` in a capped child (`capped.run_capped`, at most 1 MiB of its output kept) and
    reports its exit, wall seconds, own peak RSS and the first line that says what happened."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", NETSPEC_OFFLINE="1")
    done = run_capped(cmd, cap, timeout, env, keep=1 << 20)
    text = done["output"]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if "Traceback" in text:
        first = "Traceback ... " + (lines[-1] if lines else "")
    else:
        first = next((line for line in lines if "problem" not in line or len(lines) == 1), "")
    return {"exit": done["exit"], "seconds": done["seconds"], "peak_mib": done["peak_mib"], "message": first[:200]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", default="4GiB", help="address-space cap of each command (prlimit --as)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--commands", nargs="*", default=["validate", "run"])
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    units = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    cap = next((int(float(args.cap[:-3]) * f) for u, f in units.items() if args.cap.endswith(u)), None) or int(args.cap)
    netspec = str(Path(sys.executable).with_name("netspec"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="netspec-hostile-") as tmp:
        tmp = Path(tmp)
        cases = make_cases(tmp)
        for name, (data, width) in cases.items():
            if args.only and name not in args.only:
                continue
            spec = tmp / f"{name}.yaml"
            spec.write_text(SPEC.format(data=data, width=width))
            for command in args.commands:
                cmd = [netspec, command, str(spec)] + (
                    ["--logdir", str(tmp / "runs"), "--quiet"] if command == "run" else []
                )
                r = run_one(cmd, cap, args.timeout)
                rows.append((name, command, r))
                print(
                    f"{name:34s} {command:8s} exit {r['exit']!s:8s} {r['seconds']:7.2f} s {r['peak_mib']:8.0f} MiB  {r['message']}",
                    flush=True,
                )
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"cap {args.cap} (prlimit --as), timeout {args.timeout:g} s\n\n")
            f.write("| file | command | exit | s | peak RSS MiB | message |\n|---|---|---:|---:|---:|---|\n")
            for name, command, r in rows:
                msg = r["message"].replace("|", "\\|")
                f.write(f"| {name} | {command} | {r['exit']} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | {msg} |\n")


if __name__ == "__main__":
    main()
