"""Small-ImageNet (Chrabaszcz et al. 2017, "Downsampled ImageNet" 32x32 / 64x64), read once.

The release holds ``train_data_batch_1`` .. ``train_data_batch_10`` and ``val_data``, each either
an ``.npz`` or a pickled dict, with keys ``data`` (uint8, ``N x 3*s*s``, channel-major RGB) and
``labels`` (1..1000). The files may sit in ``dataset.root`` itself or in its sub-folders (the
release unpacks into ``Imagenet32_train_npz/`` and ``Imagenet32_val_npz/``), with or without the
``.npz`` suffix.

The first run converts them, one batch file at a time, into uint8 NHWC ``.npy`` files under
``paths.cache_dir`` (labels shifted to 0..999); every later run memory-maps that cache, so the
data are never decoded again and the 64 px training set (~15 GB) is never held twice in memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from spatialprobe.data.sources import Splits
from spatialprobe.errors import DataError

FILES = {"train": [f"train_data_batch_{i}" for i in range(1, 11)], "test": ["val_data"]}
SUFFIXES = ("", ".npz", ".pkl", ".pickle")
NUM_CLASSES = 1000
CACHE_VERSION = 1
DOWNLOAD_HINT = ("download the Downsampled ImageNet files (Imagenet{s}_train_npz.zip and Imagenet{s}_val_npz.zip) "
                 "from https://image-net.org/download-images.php and unpack them into dataset.root")
_CHUNK = 8192  # rows converted at a time: bounds the extra memory of the NHWC transpose


def locate(root: Path, name: str) -> Path | None:
    """``name`` (any of the accepted suffixes) in ``root`` or one of its immediate sub-folders."""
    root = Path(root)
    folders = [root] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    for folder in folders:
        for suffix in SUFFIXES:
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return path
    return None


def has_batches(root: Path) -> bool:
    return Path(root).is_dir() and locate(root, FILES["train"][0]) is not None


def find_files(root: Path, size: int) -> dict[str, list[Path]]:
    """The batch files of every split; a DataError naming every missing one."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; {DOWNLOAD_HINT.format(s=size)}")
    found = {split: [locate(root, name) for name in names] for split, names in FILES.items()}
    missing = [name for split, names in FILES.items() for name, p in zip(names, found[split], strict=True) if p is None]
    if missing:
        raise DataError(
            f"{root}: missing Small-ImageNet batch files: {', '.join(missing)} (looked for them, with or without "
            f".npz, in {root} and its sub-folders); {DOWNLOAD_HINT.format(s=size)}"
        )
    return found  # type: ignore[return-value]


def _load_dict(path: Path) -> dict:
    try:
        if zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as z:
                return {key: z[key] for key in z.files if key in ("data", "labels")}
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="latin1")
    except Exception as err:  # zip / pickle / EOF errors of a truncated or foreign file
        raise DataError(f"{path}: unreadable Small-ImageNet batch ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict with keys 'data' and 'labels', found a {type(obj).__name__}")
    return obj


def read_batch(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (``(N, 3*s*s)`` uint8 channel-major rows, int64 labels 0..999), checked."""
    batch = _load_dict(path)
    absent = [k for k in ("data", "labels") if k not in batch]
    if absent:
        raise DataError(f"{path}: no key {' or '.join(repr(k) for k in absent)} (found: {', '.join(map(str, batch))}); "
                        f"a Small-ImageNet batch holds 'data' (N x {3 * size * size} uint8) and 'labels' (1..1000)")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    width = 3 * size * size
    if data.ndim != 2 or data.shape[1] != width:
        hint = ""
        if data.ndim == 2 and data.shape[1] % 3 == 0 and round((data.shape[1] // 3) ** 0.5) ** 2 * 3 == data.shape[1]:
            hint = f" (rows of {data.shape[1]} are {round((data.shape[1] // 3) ** 0.5)} px images)"
        raise DataError(f"{path}: 'data' has shape {data.shape}, expected (N, {width}) for {size}x{size} "
                        f"channel-major RGB images{hint}")
    if data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' has dtype {data.dtype}, expected uint8")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'labels' must be {len(data)} integers (one per image), found shape {labels.shape} "
                        f"of {labels.dtype}")
    lo, hi = (int(labels.min()), int(labels.max())) if len(labels) else (1, 1)
    if lo < 1 or hi > NUM_CLASSES:
        raise DataError(f"{path}: labels span {lo}..{hi}, expected 1..{NUM_CLASSES} (Small-ImageNet numbers classes "
                        f"from 1)")
    return data, labels.astype(np.int64) - 1


def to_nhwc(rows: np.ndarray, size: int) -> np.ndarray:
    """Channel-major rows ``(N, 3*s*s)`` -> contiguous ``(N, s, s, 3)`` images."""
    return np.ascontiguousarray(rows.reshape(-1, 3, size, size).transpose(0, 2, 3, 1))


# --------------------------------------------------------------------------- the .npy cache
def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _write_images(path: Path, files: list[Path], size: int) -> np.ndarray:
    """Stream every batch file's images into one uint8 NHWC ``.npy``; return all labels.

    The row count is known only at the end, so a header with room for any count is written first
    and replaced by the real one (of the same length: numpy pads headers to 64 bytes) at the end.
    """
    reserved = len(_npy_header((10**15, size, size, 3)))
    labels = []
    with open(path, "wb") as fh:
        fh.write(b"\0" * reserved)
        for f in files:
            rows, y = read_batch(f, size)
            for start in range(0, len(rows), _CHUNK):
                fh.write(memoryview(to_nhwc(rows[start : start + _CHUNK], size)).cast("B"))
            labels.append(y)
            del rows
        count = sum(len(y) for y in labels)
        header = _npy_header((count, size, size, 3))
        if len(header) != reserved:  # cannot happen for 4-d uint8 shapes; guard the invariant anyway
            raise RuntimeError(f"npy header length changed ({len(header)} != {reserved})")
        fh.seek(0)
        fh.write(header)
    return np.concatenate(labels)


def cache_dir_for(files: dict[str, list[Path]], size: int, cache_dir: Path) -> Path:
    ident = [f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for split in FILES for p in files[split]]
    digest = hashlib.sha1("\n".join([*ident, f"{size}", f"v{CACHE_VERSION}"]).encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser() / f"smallimagenet-{size}px-{digest}"


def _open_cache(folder: Path) -> Splits:
    x = {s: np.load(folder / f"{s}_x.npy", mmap_mode="c") for s in FILES}
    y = {s: np.load(folder / f"{s}_y.npy") for s in FILES}
    return Splits(x, y, [str(i) for i in range(NUM_CLASSES)], origin=str(folder))


def _convert(files: dict[str, list[Path]], size: int, folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for split in FILES:
            labels = _write_images(tmp / f"{split}_x.npy", files[split], size)
            np.save(tmp / f"{split}_y.npy", labels)
        try:
            os.replace(tmp, folder)
        except OSError:  # another run finished the same cache first: keep theirs
            if not (folder / "test_y.npy").is_file():
                raise
    except OSError as err:
        need = sum(p.stat().st_size for split in FILES for p in files[split])
        raise DataError(f"cannot write the Small-ImageNet cache in {folder.parent} ({err.strerror or err}); it needs "
                        f"about {need / 2**30:.1f} GiB: point paths.cache_dir (SPATIALPROBE_CACHE) at a larger "
                        f"writable disk") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_small_imagenet(root: Path, size: int, cache_dir: Path | None) -> Splits:
    """Splits ``train`` (batches 1..10) and ``test`` (``val_data``), memory-mapped from the cache."""
    files = find_files(root, size)
    if cache_dir is None:  # no cache: read into memory (small copies and tests only)
        x, y = {}, {}
        for split, paths in files.items():
            parts = [read_batch(p, size) for p in paths]
            x[split] = to_nhwc(np.concatenate([rows for rows, _ in parts]), size)
            y[split] = np.concatenate([labels for _, labels in parts])
        return Splits(x, y, [str(i) for i in range(NUM_CLASSES)], origin=str(root))
    folder = cache_dir_for(files, size, cache_dir)
    if not (folder / "test_y.npy").is_file():
        _convert(files, size, folder)
    try:
        return _open_cache(folder)
    except (OSError, ValueError):  # a damaged cache is rebuilt, never trusted
        shutil.rmtree(folder, ignore_errors=True)
        _convert(files, size, folder)
        return _open_cache(folder)
