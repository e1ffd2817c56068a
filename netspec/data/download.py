"""The named data sets' files (mnist, fashion_mnist): where they are looked for, and their download.

Contract. `locate(dataset, *, data_dir, download) -> {role: Path}` finds the four IDX files
(`formats.FILES`, each plain or `.gz`) of a named data set, or downloads the missing ones into the
user cache; `load_standard(dataset, ...) -> formats.Splits` reads them (uint8 images [N, 28, 28],
uint8 labels [N]); `cache_dir(dataset)` is that cache. Only `arrays.load` calls them, when a run
starts: `validate` knows the named sets without their files (`sources.STANDARD`). Problems raise
`DataError` saying where netspec looked and where to put the files.

Where a data set is looked for, in this order (the first directory that holds all four files
wins):
    1. `data_dir` (the spec's `dir` or `--data-dir`), then `data_dir/<dataset>`
    2. `$NETSPEC_DATA`, then `$NETSPEC_DATA/<dataset>`
    3. the user cache, `$XDG_CACHE_HOME/netspec/<dataset>` or `~/.cache/netspec/<dataset>`
    4. system copies (`SYSTEM_DIRS`: Debian's /usr/share/datasets/fashion-mnist)
If none does, the missing files are downloaded into the cache from `MIRRORS[dataset]` in order,
each checked against `SHA256[dataset]` and written atomically (a temporary name, fsync, rename),
unless `download=False` or `$NETSPEC_OFFLINE` is set (to anything but "" or "0"). Local copies
are read, never checksummed. No jax; click only for a progress bar on a terminal.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from netspec.data.formats import FILES, Splits, _find_files, _load_roles
from netspec.errors import DataError

MIRRORS: dict[str, list[str]] = {  # base URLs, tried in order
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion_mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}


SHA256: dict[str, dict[str, str]] = {  # SHA-256 of each official .gz file
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}


# Debian's dataset-fashion-mnist recompresses the files (other .gz bytes), but their contents are
# the upstream ones; local copies are read, never checksummed.
SYSTEM_DIRS: dict[str, list[Path]] = {"fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")]}


TIMEOUT_S = 30.0  # per socket operation, not per file


def _check_dataset(dataset: str) -> None:
    if dataset not in MIRRORS:
        names = sorted(MIRRORS)
        close = difflib.get_close_matches(dataset, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(f"unknown standard dataset {dataset!r}; the known ones are {', '.join(names)}.{hint}")


def cache_dir(dataset: str) -> Path:
    """The user cache directory for a dataset (downloads land here)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return root / "netspec" / dataset


def _search_dirs(dataset: str, data_dir) -> list[tuple[Path, str]]:
    places = []
    if data_dir is not None:
        places += [(Path(data_dir), "data_dir"), (Path(data_dir) / dataset, "data_dir")]
    if os.environ.get("NETSPEC_DATA"):
        env = Path(os.environ["NETSPEC_DATA"])
        places += [(env, "$NETSPEC_DATA"), (env / dataset, "$NETSPEC_DATA")]
    places.append((cache_dir(dataset), "cache"))
    places += [(d, "system") for d in SYSTEM_DIRS.get(dataset, [])]
    return places


def locate(dataset: str, *, data_dir: str | os.PathLike | None = None, download: bool = True) -> dict[str, Path]:
    """Finds (or downloads into the cache) the four files of a standard dataset, keyed by role."""
    _check_dataset(dataset)
    searched = []
    for directory, origin in _search_dirs(dataset, data_dir):
        found, missing = _find_files(directory)
        if not missing:
            return found
        if not directory.is_dir():
            searched.append(f"{directory} ({origin}; no such directory)")
        elif len(missing) == len(FILES):
            searched.append(f"{directory} ({origin}; none of the files)")
        else:
            searched.append(f"{directory} ({origin}; missing {', '.join(missing)})")

    cache = cache_dir(dataset)
    offline = os.environ.get("NETSPEC_OFFLINE", "") not in ("", "0")
    if offline or not download:
        reason = "NETSPEC_OFFLINE is set" if offline else "downloading is turned off"
        raise _not_found(dataset, searched, reason, cache)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        reason = f"cannot create {cache}: {e.strerror or e}"
        raise _not_found(dataset, searched, reason, cache) from None
    found, _ = _find_files(cache)
    for role, name in FILES.items():
        if role not in found:
            found[role] = _download(dataset, f"{name}.gz", cache, searched)
    return found


def _not_found(dataset: str, searched: list[str], reason: str, cache: Path) -> DataError:
    names = ", ".join(f"{n}.gz" for n in FILES.values())
    source = MIRRORS[dataset][0] if MIRRORS[dataset] else "the dataset's publisher"
    return DataError(
        f"{dataset} not found in {'; '.join(searched)}, and could not be downloaded ({reason}). "
        f"Download the four files {names} from {source} and put them in {cache}, "
        "or pass --data-dir naming a directory that holds them (plain or .gz)."
    )


class _Failed(Exception):
    """One mirror failed for one file; the message says why."""


class _Mismatch(_Failed):
    """A mirror served a whole file whose SHA-256 is not the expected one."""


def _download(dataset: str, filename: str, cache: Path, searched: list[str]) -> Path:
    """Fetches one file from the mirrors in order into `cache`, verified; returns its path."""
    expected = SHA256[dataset][filename]
    failures: list[str] = []
    mismatches: list[str] = []
    for base in MIRRORS[dataset]:
        url = base + filename
        try:
            return _fetch(url, cache / filename, expected)
        except _Failed as e:
            (mismatches if isinstance(e, _Mismatch) else failures).append(f"{url}: {e}")
    if mismatches:
        raise DataError(
            f"downloaded {filename} for {dataset}, but its checksum is wrong: "
            f"{'; '.join(mismatches + failures)}. It was not kept in {cache}. The mirror may "
            f"serve a changed or damaged file; download it yourself, check it, and put it in "
            f"{cache}, or pass --data-dir."
        )
    raise _not_found(dataset, searched, "; ".join(failures) or "no mirror is listed", cache)


def _fetch(url: str, target: Path, expected_sha256: str) -> Path:
    """Streams `url` into a temp file next to `target`, checks it, then renames it into place."""
    import http.client
    import urllib.error
    import urllib.request

    try:
        # in the folder on disk: mkstemp makes `dir` absolute by os.path.abspath, which reads LINK/.. as text
        fd, tmp = tempfile.mkstemp(dir=target.parent.resolve(), prefix=f".{target.name}.", suffix=".part")
    except OSError as e:
        raise _Failed(f"cannot write in {target.parent}: {e.strerror or e}") from None
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                received = 0
                with _progress(total, f"downloading {target.name}") as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            if total is not None and received < total:
                raise _Failed(f"connection dropped after {received} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise _Mismatch(f"SHA-256 is {actual}, expected {expected_sha256}")
        os.replace(tmp, target)
    except urllib.error.HTTPError as e:
        raise _Failed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _Failed(str(e.reason)) from None
    except (OSError, http.client.HTTPException) as e:
        raise _Failed(str(e) or type(e).__name__) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(target.parent)
    return target


def _fsync_dir(directory: Path) -> None:
    try:  # makes the rename durable; not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        pass


def _progress(total: int | None, label: str):
    """A click progress bar on stderr when stderr is a terminal and the size is known."""
    if total is None or not sys.stderr.isatty():
        return _NoBar()
    import click  # only when a bar is shown: keeps `validate` imports light

    return click.progressbar(length=total, label=label, file=sys.stderr)


def load_standard(dataset: str, *, data_dir: str | os.PathLike | None = None, download: bool = True) -> Splits:
    """Loads mnist or fashion_mnist: uint8 images [N, 28, 28] and uint8 labels [N]."""
    splits = _load_roles(locate(dataset, data_dir=data_dir, download=download))
    assert splits.x_test is not None  # locate finds all four files: the test split is there
    for x, path in ((splits.x_train, "train_images"), (splits.x_test, "test_images")):
        if x.dtype != np.uint8 or x.shape[1:] != (28, 28):
            raise DataError(
                f"{dataset}: {path} holds {x.dtype.name} {x.shape}, but {dataset} "
                "images are uint8 [N, 28, 28]. The file is not the official one; "
                "replace it."
            )
    return splits
