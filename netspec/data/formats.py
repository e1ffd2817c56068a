"""The readers of data files: IDX (raw or gzip), .npy and .npz archives, CSV tables.

Contract. Every reader runs on the host, returns numpy arrays and never imports jax; every
problem a user can fix raises `DataError`, one paragraph naming the file, what is wrong and how
to fix it. `arrays.describe` uses the header-only readers (`idx_header`, `open_npz`) so that
`validate` learns shapes without reading the data; `arrays.load` and `download.load_standard` read
it all; `netspec.inference` reads predict's inputs with the same guards.

    open_data_file(path, what) -> binary file     a regular file within `read_limit()`, or DataError
    idx_header(path) -> (dtype, shape)            an IDX file's header only
    read_idx(path) -> ndarray                     one IDX file, raw or gzip (told by its content)
    load_idx_dir(path) -> Splits                  a directory of IDX files under MNIST's names (`FILES`)
    open_npz(path) -> (ZipFile, {name: NpyHeader})   an .npz archive, every header checked (a context manager)
    read_npz_array(archive, header, path), read_npy(path) -> ndarray
    load_npz(path, *, x_key, y_key) -> Splits     the test split is None unless the archive has one
    load_csv(path, *, features, label, header, delimiter) -> Table(x float32 [N, F], y [N], classes, feature_names)

Data files are untrusted. Each must be a regular file (not a device such as /dev/zero, a FIFO,
a socket or a directory; a symlink is followed and named with its target) holding at most
`read_limit()` bytes: `MAX_DATA_BYTES` (64 GiB), or less when this process may use less memory
(`netspec.machine.host_memory`). Every size a file states (an IDX or .npy header, a zip directory
entry) is checked against the file's real size and the limit before anything is allocated; gzip
and deflate streams are read only up to their stated size (plus `SLACK_BYTES`, to say how much
more there is); an .npz holds at most `MAX_NPZ_MEMBERS` arrays and is never unpickled; a CSV line
may be at most `MAX_LINE_CHARS` characters and a CSV is read row by row into float32. A file that
shrinks while it is read is reported as truncated.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import itertools
import math
import os
import stat
import struct
import zipfile
import zlib
from array import array
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from netspec.errors import DataError
from netspec.machine import format_bytes, host_memory

MAX_DATA_BYTES = (
    64 * 2**30
)  # the most data netspec reads from one file (uncompressed): far above any data set netspec trains on one host


SLACK_BYTES = 2**20  # read past a compressed stream's stated size, to say how much more it holds


MAX_LINE_CHARS = 2**23  # a CSV line (8 Mi characters: some 4 million one-digit columns); a longer one is refused unread


MAX_NPZ_MEMBERS = 4096  # arrays in one .npz archive (netspec reads at most four)


# Deflate encodes at most 258 bytes in 2 bits (RFC 1951: the shortest length and distance codes
# are 1 bit each), so a gzip file of n bytes holds at most 1032 n bytes of data.
DEFLATE_MAX_RATIO = 1032


_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def read_limit() -> tuple[int, str]:
    """(bytes, why): the most data netspec reads from one file: `MAX_DATA_BYTES`, or the memory
    this process may use (`netspec.cost.host_memory`) when that is less."""
    memory = host_memory()
    if memory.bytes < MAX_DATA_BYTES:
        return memory.bytes, f"{memory.origin}, {format_bytes(memory.bytes)}"
    return MAX_DATA_BYTES, f"netspec's limit for one data file, {format_bytes(MAX_DATA_BYTES)}"


def _named(path: Path) -> str:
    """The path as the user gave it, and where it leads when it is a symlink."""
    try:
        if os.path.islink(path):
            return f"{path} (a symlink to {os.path.realpath(path)})"
    except OSError:
        pass
    return str(path)


def _too_large(path, size: int, what: str) -> DataError:
    _, why = read_limit()
    return DataError(
        f"{_named(path)}: {what} {format_bytes(size)} of data ({size} bytes), more than netspec reads from "
        f"one data file ({why}). Use a smaller file (fewer examples, or a smaller dtype such as uint8 "
        "images), or train on a machine with more memory."
    )


def open_data_file(path: str | os.PathLike, what: str = "a data file") -> BinaryIO:
    """Opens `path` for binary reading when it is a regular file of at most `read_limit()` bytes.

    Raises DataError naming the file for a missing file, a directory, a device, a FIFO or a socket
    (opened without blocking, so a FIFO with no writer is refused at once), an unreadable file and
    a file over the limit. The caller closes the file.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"{_named(path)}: file not found. Check the path, or put the file there.") from None
    except OSError as e:
        with suppress(OSError):  # a socket cannot be opened at all: say what it is
            _refuse_irregular(path, os.stat(path).st_mode, what)
        raise DataError(f"{_named(path)}: cannot open it ({e.strerror or e}).") from None
    try:
        info = os.fstat(fd)
        _refuse_irregular(path, info.st_mode, what)
        limit, _ = read_limit()
        if info.st_size > limit:
            raise _too_large(path, info.st_size, "holds")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _refuse_irregular(path: Path, mode: int, what: str) -> None:
    """Raises DataError unless `mode` is a regular file's."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise DataError(f"{_named(path)}: is a directory, but {what} was expected. Name the file itself.")
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise DataError(
        f"{_named(path)}: is {kind}, not a regular file. netspec reads data only from regular files, "
        "whose size it can check before reading: a device or a pipe can send data without end, or "
        "none, forever. Save the data in a file and name that file."
    )


def _read_exactly(f, buffer: memoryview) -> int:
    """Fills `buffer` from `f` until it is full or the data ends; returns the bytes read."""
    done = 0
    while done < len(buffer):
        n = f.readinto(buffer[done:])
        if not n:
            break
        done += n
    return done


def _allocate(path, nbytes: int):
    """An uninitialised uint8 buffer of `nbytes`, or DataError when the memory is not there."""
    try:
        return np.empty(nbytes, np.uint8)
    except MemoryError:
        raise DataError(
            f"{_named(path)}: not enough memory to read its {format_bytes(nbytes)} of data. Free some memory, "
            "use a smaller file, or train on a machine with more memory."
        ) from None


_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@contextmanager
def _idx_stream(path: Path):
    """Yields (stream, file size, compressed) for an IDX file: through gzip when it starts with
    the gzip magic bytes. The file is a regular file within the read limit (`open_data_file`)."""
    f = open_data_file(path, "an IDX file")
    try:
        size = os.fstat(f.fileno()).st_size
        is_gzip = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        if not is_gzip:
            yield f, size, False
            return
        with gzip.GzipFile(fileobj=f, mode="rb") as gz:
            yield gz, size, True
    finally:
        f.close()


def _read_header(f, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = f.read(4)
    if len(magic) < 4:
        raise DataError(
            f"{path}: is empty or truncated ({len(magic)} bytes); an IDX file starts "
            "with a 4-byte magic number. Download or write the file again."
        )
    if magic[:2] != b"\0\0":
        raise DataError(
            f"{path}: is not an IDX file: it starts with bytes {magic.hex(' ')}, but an "
            "IDX file starts with 00 00 <dtype code> <ndim>. Check that this is the "
            "right file (e.g. not an HTML error page saved by a failed download)."
        )
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} {d.name}" for c, d in _IDX_DTYPES.items())
        raise DataError(
            f"{path}: unknown IDX dtype code 0x{code:02X}; the known codes are {known}. "
            "The file is corrupt or not an IDX file."
        )
    if ndim == 0:
        raise DataError(f"{path}: IDX header says 0 dimensions; a data file needs at least one.")
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header: {ndim} dimensions need {4 * ndim} bytes "
            f"of sizes, found {len(dims)}. Download or write the file again."
        )
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    return _IDX_DTYPES[code], shape


def _guard_decompress(path: Path, action):
    try:
        return action()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(
            f"{path}: the gzip data is damaged or cut short ({e}). The file is "
            "incomplete or corrupt; delete it and download it again."
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}).") from None


def _checked_header(f, path: Path, size: int, compressed: bool) -> tuple[np.dtype, tuple[int, ...], int]:
    """The header, and the bytes of data it states, after checking them against the file's size
    and the read limit (before anything is allocated)."""
    dtype, shape = _guard_decompress(path, lambda: _read_header(f, path))
    expected = math.prod(shape) * dtype.itemsize
    described = f"shape {shape} of {dtype.newbyteorder('=').name}, {expected} bytes of data"
    if expected > read_limit()[0]:
        raise _too_large(path, expected, f"its header says {described}:")
    if compressed and expected > size * DEFLATE_MAX_RATIO:
        raise DataError(
            f"{path}: truncated or damaged: the header says {described}, but a gzip file of {size} bytes "
            f"holds at most {size * DEFLATE_MAX_RATIO} (deflate compresses at most {DEFLATE_MAX_RATIO}:1). "
            "Download or write the file again."
        )
    if not compressed:
        follows = size - 4 - 4 * len(shape)
        if follows < expected:
            raise DataError(
                f"{path}: truncated: the header says {described}, but only {follows} "
                "bytes follow it. The file is incomplete; download or write it again."
            )
        if follows > expected:
            raise DataError(
                f"{path}: wrong element count: the header says {described}, but "
                f"{follows} bytes follow it ({follows - expected} extra). The header "
                "does not match the data; write the file again with the right dimensions."
            )
    return dtype, shape, expected


def idx_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """Reads only the header of an IDX file: its dtype (native byte order) and shape.

    The data is not read. The size the header states is checked against the read limit, and
    against the file's size (exactly for a raw file; for gzip, against the most a deflate stream
    of that size can hold); `read_idx` checks a gzip file's data length. Raises DataError.
    """
    path = Path(path)
    with _idx_stream(path) as (f, size, compressed):
        dtype, shape, _ = _checked_header(f, path, size, compressed)
    return dtype.newbyteorder("="), shape


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (raw or gzip) into a writable array in native byte order.

    Memory: one buffer of the size the header states, allocated after the header is checked
    (see `idx_header`); a gzip stream is read to that size plus at most `SLACK_BYTES`. Raises
    DataError for a file that is truncated, longer than its header says, damaged or too large.
    """
    path = Path(path)
    with _idx_stream(path) as (f, size, compressed):
        dtype, shape, expected = _checked_header(f, path, size, compressed)
        buffer = _allocate(path, expected)
        got = _guard_decompress(path, lambda: _read_exactly(f, memoryview(buffer)))
        described = f"shape {shape} of {dtype.newbyteorder('=').name}, {expected} bytes of data"
        if got < expected:
            raise DataError(
                f"{path}: truncated: the header says {described}, but only {got} "
                "bytes follow it. The file is incomplete; download or write it again."
            )
        more = len(_guard_decompress(path, lambda: f.read(SLACK_BYTES))) if compressed else 0
        if more:
            follows = (
                f"{expected + more} bytes follow it ({more} extra)"
                if more < SLACK_BYTES
                else f"more than {expected + SLACK_BYTES} bytes follow it (reading stopped there)"
            )
            raise DataError(
                f"{path}: wrong element count: the header says {described}, but {follows}. The header "
                "does not match the data; write the file again with the right dimensions."
            )
    out = buffer.view(dtype).reshape(shape)
    if not dtype.isnative:
        out = out.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return out


class Splits(NamedTuple):
    """Train and test arrays; `x_test` and `y_test` are None when the source has no test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None


FILES = {  # role -> file name, without ".gz"; the same for every IDX directory
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """The four role files in `directory` (plain preferred over .gz) and the names missing."""
    found, missing = {}, []
    for role, name in FILES.items():
        for candidate in (directory / name, directory / f"{name}.gz"):
            # anything under the name counts (a device, a FIFO, a broken symlink): reading it then
            # says what is wrong with it, rather than calling it missing
            if os.path.lexists(candidate):
                found[role] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def check_directory(directory: Path) -> None:
    """Raises DataError unless `directory` is a directory (an IDX directory's path)."""
    if directory.is_dir():
        return
    needed = f"Name a directory that holds {', '.join(FILES.values())} (each plain or .gz)."
    if not os.path.lexists(directory):
        raise DataError(f"{directory}: no such directory. {needed}")
    try:
        mode = os.stat(directory).st_mode
        kind = next((name for test, name in _KINDS if test(mode)), "a file") if not stat.S_ISREG(mode) else "a file"
    except OSError as e:
        kind = f"unreadable ({e.strerror or e})"
    raise DataError(f"{_named(directory)}: is {kind}, not a directory. {needed}")


def load_idx_dir(path: str | os.PathLike) -> Splits:
    """Loads a directory holding the four IDX files under the MNIST names (plain or .gz)."""
    directory = Path(path)
    check_directory(directory)
    found, missing = _find_files(directory)
    test_roles = {"test_images", "test_labels"}
    required = [FILES[r] for r in FILES if r not in test_roles and r not in found]
    half_test = len(test_roles & set(found)) == 1
    if required or half_test:
        present = sorted(p.name for p in directory.iterdir()) or ["nothing"]
        raise DataError(
            f"{directory}: missing {', '.join(missing)} (plain or .gz); it holds "
            f"{', '.join(present)}. An IDX directory needs {FILES['train_images']} and "
            f"{FILES['train_labels']}, and for a test split both {FILES['test_images']} and "
            f"{FILES['test_labels']}; rename yours to match."
        )
    return _load_roles(found)


def _load_roles(paths: dict[str, Path]) -> Splits:
    arrays = {role: read_idx(p) for role, p in paths.items()}
    for split in ("train", "test") if "test_images" in paths else ("train",):
        images, labels = paths[f"{split}_images"], paths[f"{split}_labels"]
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if y.ndim != 1:
            raise DataError(f"{labels}: labels must be one-dimensional [N], found shape {y.shape}.")
        if len(x) != len(y):
            raise DataError(
                f"{images} holds {x.shape[0]} examples of shape {x.shape[1:]}, but "
                f"{labels} holds {len(y)} labels; they must match one to one. "
                "One of the files belongs to another dataset or split."
            )
    return Splits(arrays["train_images"], arrays["train_labels"], arrays.get("test_images"), arrays.get("test_labels"))


_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


class NpyHeader(NamedTuple):
    """One array of an .npz archive, from its .npy header: checked against the archive's sizes."""

    shape: tuple[int, ...]
    dtype: np.dtype
    member: str  # the member's name in the zip (e.g. x.npy)


def _zip_entries(f, size: int) -> int | None:
    """The number of members a zip file's end record states (zip64 too), or None when it has
    none (zipfile then says the file is not a zip archive). Read before zipfile loads the whole
    central directory into memory."""
    tail = min(size, 22 + 65535)  # the end record, and a comment of at most 65,535 bytes
    f.seek(size - tail)
    data = f.read(tail)
    at = data.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(data):
        return None
    entries = struct.unpack_from("<H", data, at + 10)[0]
    if (
        entries == 0xFFFF and at >= 20 and data[at - 20 : at - 16] == b"PK\x06\x07"
    ):  # zip64: the count is in its own record
        (offset,) = struct.unpack_from("<Q", data, at - 20 + 8)
        if offset + 56 <= size:
            f.seek(offset)
            record = f.read(56)
            if record[:4] == b"PK\x06\x06":
                entries = struct.unpack_from("<Q", record, 32)[0]
    f.seek(0)
    return entries


@contextmanager
def open_npz(path: str | os.PathLike):
    """Yields (zipfile.ZipFile, {array name: NpyHeader}) of an .npz archive, every header checked.

    The file is a regular file within the read limit (`open_data_file`), with at most
    `MAX_NPZ_MEMBERS` members; each array's header (shape and dtype) must state exactly the bytes
    its member holds (the uncompressed size in the zip directory, which bounds what inflating it
    may produce), and all of them together at most the read limit. Object arrays are refused
    (netspec never unpickles). Raises DataError naming the file and the array.
    """
    path = Path(path)
    f = open_data_file(path, "an .npz archive")
    try:
        size = os.fstat(f.fileno()).st_size
        if f.read(6) == b"\x93NUMPY":
            raise DataError(
                f"{path}: is a single .npy array, but a .npz archive with named arrays "
                "is needed. Write it with numpy.savez(path, x=..., y=...)."
            )
        f.seek(0)
        entries = _zip_entries(f, size)
        if entries is not None and entries > MAX_NPZ_MEMBERS:
            raise DataError(
                f"{path}: the archive says it holds {entries} members; netspec reads .npz archives of at most "
                f"{MAX_NPZ_MEMBERS} (it needs x and y, or x_train, y_train, x_test, y_test). Save only those arrays."
            )
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as e:
            raise DataError(
                f"{path}: cannot be read as a .npz archive ({e}). Write it with numpy.savez or numpy.savez_compressed."
            ) from None
        with archive:
            yield archive, _npz_headers(archive, path)
    finally:
        f.close()


def _npz_headers(archive: zipfile.ZipFile, path: Path) -> dict[str, NpyHeader]:
    headers: dict[str, NpyHeader] = {}
    total = 0
    limit, _ = read_limit()
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        name = info.filename[:-4]
        try:
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(member)
                else:  # (3, 0): a UTF-8 header; numpy reads it only through its private helper
                    shape, _fortran, dtype = np.lib.format._read_array_header(member, version)  # type: ignore[attr-defined]  # private: not in numpy's stubs
                header_bytes = member.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as e:
            raise DataError(
                f"{path}: array {name!r} cannot be read ({e}). Write the archive again with numpy.savez."
            ) from None
        if dtype.hasobject:
            raise DataError(
                f"{path}: array {name!r} holds Python objects, which netspec never "
                "unpickles. Save it as a numeric array (e.g. x.astype('float32'))."
            )
        stated = math.prod(shape) * dtype.itemsize
        held = info.file_size - header_bytes
        if stated != held:
            raise DataError(
                f"{path}: array {name!r}: its header says shape {tuple(shape)} of {dtype.name}, "
                f"{format_bytes(stated)} ({stated} bytes), but the archive holds {held} bytes of data for it. "
                "The archive is damaged or was not written by numpy; write it again with numpy.savez."
            )
        total += stated
        if total > limit:
            raise _too_large(path, total, "its arrays hold")
        headers[name] = NpyHeader(tuple(shape), dtype, info.filename)
    return headers


def read_npz_array(archive: zipfile.ZipFile, header: NpyHeader, path: Path) -> np.ndarray:
    """One array of an archive `open_npz` checked: memory of its stated size, no more."""
    try:
        with archive.open(header.member) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except MemoryError:
        raise DataError(
            f"{path}: not enough memory to read array {header.member[:-4]!r} "
            f"({format_bytes(math.prod(header.shape) * header.dtype.itemsize)}). Free some memory, use a "
            "smaller file, or train on a machine with more memory."
        ) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError) as e:
        raise DataError(
            f"{path}: array {header.member[:-4]!r} cannot be read: the archive is damaged or cut short ({e}). "
            "Write it again with numpy.savez."
        ) from None


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """One .npy array, its header checked against the file's size before anything is allocated
    (a header may state any shape), within the read limit (`open_data_file`), never unpickled.
    Raises DataError naming the file."""
    path = Path(path)
    with open_data_file(path, "an .npy array") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (
                np.lib.format.read_array_header_1_0(f) if version == (1, 0) else np.lib.format.read_array_header_2_0(f)
            )
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path}: is not a .npy array ({e}). Write it with numpy.save.") from None
        if dtype.hasobject:
            raise DataError(f"{path}: holds Python objects, which netspec never unpickles. Save a numeric array.")
        stated, held = math.prod(shape) * dtype.itemsize, size - f.tell()
        if stated != held:
            raise DataError(
                f"{path}: its header says shape {tuple(shape)} of {dtype.name}, {format_bytes(stated)}, but the "
                f"file holds {held} bytes of data. It is damaged or was not written by numpy.save."
            )
        data = bytearray(stated)
        if _read_exactly(f, memoryview(data)) != stated:
            raise DataError(f"{path}: is cut short (it shrank while it was read).")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def load_npz(path: str | os.PathLike, *, x_key: str = "x", y_key: str = "y") -> Splits:
    """Loads a .npz archive without unpickling (each array checked first: `open_npz`).

    If it holds `x_train`, the split keys are used: `x_train` and `y_train`, and the test split
    from `x_test` and `y_test` when present (both or neither). Otherwise `x_key` and `y_key` are
    the training data and there is no test split.
    """
    path = Path(path)
    with open_npz(path) as (archive, headers):
        keys = sorted(headers)
        if "x_train" in keys:
            wanted = ["x_train", "y_train"]
            if "x_test" in keys or "y_test" in keys:
                wanted += ["x_test", "y_test"]
        else:
            wanted = [x_key, y_key]
        missing = [k for k in wanted if k not in keys]
        if missing:
            rule = (
                "it has x_train, so it needs y_train, and x_test with y_test when either is there"
                if "x_train" in keys
                else f"without x_train it needs {x_key!r} and {y_key!r}, or x_train, y_train (and x_test, y_test)"
            )
            raise DataError(
                f"{path}: missing {', '.join(map(repr, missing))}: {rule}. The "
                f"archive holds {', '.join(map(repr, keys)) or 'no arrays'}."
            )
        for x_name, y_name in zip(wanted[::2], wanted[1::2], strict=True):  # before reading: the headers say it
            x, y = headers[x_name].shape, headers[y_name].shape
            if len(x) == 0 or len(y) == 0 or x[0] != y[0]:
                raise DataError(
                    f"{path}: {x_name!r} has shape {x} and {y_name!r} has shape "
                    f"{y}; they need the same first dimension (one label per "
                    "example)."
                )
        x_train, y_train, *test = [read_npz_array(archive, headers[k], path) for k in wanted]
    x_test, y_test = test if test else (None, None)
    return Splits(x_train, y_train, x_test, y_test)


class Table(NamedTuple):
    """A CSV table: float32 features [N, F], labels [N], and the class names when labels are text.

    Numeric labels come back as float32 with `classes` None; text labels as int32 indices into
    `classes`, which holds the distinct names sorted. `feature_names` are the header's names of
    the F feature columns, in the order of `x`'s columns (None for a file read without a header):
    `netspec predict` finds the same columns by name in a new file.
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...] | None
    feature_names: tuple[str, ...] | None = None


def load_csv(
    path: str | os.PathLike,
    *,
    features: list[str | int] | None = None,
    label: str | int,
    header: bool = True,
    delimiter: str = ",",
) -> Table:
    """Loads a CSV table; columns are chosen by header name or 0-based index.

    `features` (default: every column but the label) picks the feature columns in the order
    given, which is the order of `x`'s columns and of `Table.feature_names`. The file is read
    as a stream, row by row, into float32 (memory: `x` itself and the labels, not the text); a
    line may be at most `MAX_LINE_CHARS` characters. Raises DataError for a missing, unreadable
    or ragged file, an unknown column, a cell that is not a number or a line too long.
    """
    path = Path(path)
    f = open_data_file(path, "a CSV file")
    try:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
        rows = _numbered_rows(csv.reader(_bounded_lines(text, path), delimiter=delimiter))
        return _read_table(rows, path, features=features, label=label, header=header, delimiter=delimiter)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot be read as a UTF-8 CSV file ({e}).") from None
    finally:
        f.close()


def _bounded_lines(text, path: Path):
    """The lines of `text`, each read at most `MAX_LINE_CHARS` characters at a time: a longer
    line (a binary file, a billion columns) is refused before it is held in memory."""
    number = total = 0
    limit, _ = read_limit()
    while line := text.readline(MAX_LINE_CHARS + 1):
        number += 1
        total += len(line)
        if len(line) > MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
            raise DataError(
                f"{path}:{number}: a line of more than {MAX_LINE_CHARS} characters (reading stopped there); "
                f"netspec reads CSV lines of up to {MAX_LINE_CHARS} characters, some {MAX_LINE_CHARS // 2} one-digit "
                "columns. This is not a table of one example per line: check that it is the right file "
                "(not binary data) and that its rows end with line breaks."
            )
        if total > limit:  # a file that grows while it is read
            raise _too_large(path, total, "grew while it was read, past")
        yield line


def _read_table(rows, path: Path, *, features, label, header: bool, delimiter: str) -> Table:
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: is empty; it needs {'a header line and ' if header else ''}at least one row of data.")
    names = [c.strip() for c in first[1]] if header else None
    if header:
        first = next(rows, None)
        if first is None:
            raise DataError(f"{path}: has a header but no rows of data.")
    width = len(names) if names is not None else len(first[1])

    label_col = _column(label, names, width, path)
    if features is None:
        feature_cols = [c for c in range(width) if c != label_col]
    else:
        feature_cols = [_column(c, names, width, path) for c in features]
        if label_col in feature_cols:
            raise DataError(
                f"{path}: column {_describe(label_col, names)} is both a feature and the label; drop it from features."
            )
    if not feature_cols:
        raise DataError(f"{path}: there are no feature columns besides the label {_describe(label_col, names)}.")

    values = array("f")  # float32, row after row: the text of a row is dropped once it is read
    labels = _LabelColumn(label_col, names, path)
    count = 0
    for line, row in itertools.chain([first], rows):
        if len(row) != width:
            raise DataError(
                f"{path}:{line}: has {len(row)} columns, but "
                f"{'the header has' if header else 'the first row has'} {width}. "
                "Every row needs the same columns; check for a missing or extra "
                f"delimiter {delimiter!r} (quote cells that contain it)."
            )
        values.extend([_number(row[c], line, c, names, path) for c in feature_cols])
        labels.add(line, row[label_col])
        count += 1
    x = np.frombuffer(values, dtype=np.float32).reshape(count, len(feature_cols))
    feature_names = tuple(names[c] for c in feature_cols) if names is not None else None
    return Table(x if x.flags.writeable else x.copy(), *labels.result(), feature_names)


def _numbered_rows(reader):
    """Yields (1-based line number where the row starts, row), skipping blank lines."""
    start = 1
    for row in reader:
        if any(cell.strip() for cell in row):
            yield start, row
        start = reader.line_num + 1


def _describe(col: int, names: list[str] | None) -> str:
    return f"{names[col]!r} (index {col})" if names is not None else f"index {col}"


def _column(ref, names: list[str] | None, width: int, path: Path) -> int:
    if isinstance(ref, str):
        if names is None:
            raise DataError(
                f"{path}: column {ref!r} is named, but the file is read without a "
                f"header; refer to columns by 0-based index (0 to {width - 1})."
            )
        if names.count(ref) > 1:
            raise DataError(
                f"{path}: the header names {ref!r} {names.count(ref)} times; rename "
                "the columns so each name is unique, or refer to them by index."
            )
        if ref not in names:
            close = difflib.get_close_matches(ref, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DataError(f"{path}: no column named {ref!r}; the columns are {', '.join(map(repr, names))}.{hint}")
        return names.index(ref)
    if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < width:
        return ref
    raise DataError(
        f"{path}: column {ref!r} does not exist: the file has {width} columns, so a "
        f"column is a 0-based index from 0 to {width - 1}"
        f"{' or a header name' if names is not None else ''}."
    )


def _number(cell: str, line: int, col: int, names, path: Path) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        found = "an empty cell" if not cell.strip() else repr(cell)
        raise DataError(
            f"{path}:{line}: column {_describe(col, names)} holds {found}, but a "
            "finite number is needed. Fix or remove that row."
        )
    return value


class _LabelColumn:
    """The label cells as they stream by: all numbers (float32), or all class names (int32
    indices into the sorted names); a mix is refused at the first cell of the other kind."""

    def __init__(self, col: int, names, path: Path):
        self.col, self.names, self.path = col, names, path
        self.numbers, self.indices = array("f"), array("i")
        self.classes: dict[str, int] = {}  # name -> index in order of first appearance
        self.first_number: tuple[int, str] | None = None
        self.first_text: tuple[int, str] | None = None

    def add(self, line: int, cell: str) -> None:
        cell = cell.strip()
        if not cell:
            raise DataError(
                f"{self.path}:{line}: the label {_describe(self.col, self.names)} is empty. Every "
                "row needs a label; fill it in or remove the row."
            )
        try:
            value = float(cell)
            numeric = math.isfinite(value)
        except ValueError:
            numeric = False
        if numeric:
            self.first_number = self.first_number or (line, cell)
            self.numbers.append(value)
        else:
            self.first_text = self.first_text or (line, cell)
            self.indices.append(self.classes.setdefault(cell, len(self.classes)))
        if self.first_number and self.first_text:
            (line, cell), (other_line, other) = self.first_number, self.first_text
            raise DataError(
                f"{self.path}: the label {_describe(self.col, self.names)} mixes numbers ({cell!r} on "
                f"line {line}) and text ({other!r} on line {other_line}). Labels are "
                "either all numbers or all class names; fix the odd cells."
            )

    def result(self) -> tuple[np.ndarray, tuple[str, ...] | None]:
        if not self.classes:
            return np.array(self.numbers, dtype=np.float32), None
        classes = tuple(sorted(self.classes))
        order = np.empty(len(classes), np.int32)
        for rank, name in enumerate(classes):
            order[self.classes[name]] = rank
        return order[np.frombuffer(self.indices, dtype=np.int32)], classes
