"""Read image classification data sets into uint8 arrays, once.

Every source returns :class:`Splits`: per split a ``(N, H, W, 3)`` uint8 array and an int64 label
vector, plus the class names. Nothing here augments or normalises: that happens batch-wise on
the training device (:mod:`spatialprobe.data.loader`).

Formats:
* ``cifar``: torchvision's on-disk CIFAR-10/100 python batches (``cifar-10-batches-py/``,
  ``cifar-100-python/``); every file is checked against the md5 torchvision publishes for it
  (``dataset.verify``), and torchvision's downloader fetches them when missing;
* ``folder``: a class-per-folder image set, ``<root>/<split>/<class>/<image>``, given as a
  directory or a (gzipped) tar archive of one. Images are decoded once with Pillow and cached as
  an ``.npz`` under ``paths.cache_dir``; later runs memory-map the cache. Runs started side by side
  decode once: the others wait on a lock file next to the cache, then read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from spatialprobe.errors import DataError
from spatialprobe.run.files import atomic_file

TRAIN_SPLIT_NAMES = ("train",)
EVAL_SPLIT_NAMES = ("test", "val")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CACHE_VERSION = 1


@dataclass
class Splits:
    x: dict[str, np.ndarray]  # split -> (N, H, W, 3) uint8
    y: dict[str, np.ndarray]  # split -> (N,) int64
    classes: list[str] = field(default_factory=list)
    origin: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- CIFAR batches
def _cifar_meta(name: str):
    """torchvision's description of the on-disk CIFAR layout (folder, files, published md5s, url)."""
    from torchvision import datasets

    return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]


def has_cifar_batches(name: str, root: Path) -> bool:
    return name in ("cifar10", "cifar100") and (Path(root) / _cifar_meta(name).base_folder).is_dir()


def _download_cifar(name: str, root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    meta = _cifar_meta(name)
    try:
        download_and_extract_archive(meta.url, str(root), filename=meta.filename, md5=meta.tgz_md5)
    except Exception as err:  # URLError without a network, HTTP errors, a bad archive
        raise DataError(
            f"no {name} batches in {root / meta.base_folder} and the download failed ({type(err).__name__}: {err}); "
            f"fetch {meta.url} and unpack it into {root}, or point dataset.root at a class-folder copy"
        ) from None


def _read_batch(path: Path, md5: str | None) -> dict:
    from torchvision.datasets.utils import check_md5

    if not path.is_file():
        raise DataError(f"{path}: missing CIFAR batch file")
    if md5 is not None and not check_md5(str(path), md5):
        raise DataError(
            f"{path}: checksum mismatch (expected the published md5 {md5}); the file is truncated or corrupt - "
            f"delete it and download again (dataset.verify=false accepts a modified copy)"
        )
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="latin1")
    except Exception as err:  # EOFError / UnpicklingError of a truncated file
        raise DataError(f"{path}: unreadable CIFAR batch ({type(err).__name__}: {err})") from None


def load_cifar(name: str, root: Path, download: bool, verify: bool = True) -> Splits:
    """CIFAR-10/100 python batches in torchvision's layout, checked against the published md5s."""
    meta = _cifar_meta(name)
    folder = Path(root) / meta.base_folder
    if not folder.is_dir():
        if not download:
            raise DataError(
                f"no {name} batches in {folder}; set dataset.download=true (needs a network), unpack "
                f"{meta.url} into {root}, or point dataset.root at a class-folder copy"
            )
        _download_cifar(name, Path(root))
    label_key = "labels" if name == "cifar10" else "fine_labels"
    x, y = {}, {}
    for split, files in (("train", meta.train_list), ("test", meta.test_list)):
        xs, ys = [], []
        for fname, md5 in files:
            path = folder / fname
            batch = _read_batch(path, md5 if verify else None)
            try:
                data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                labels = np.asarray(batch[label_key], dtype=np.int64)
            except (KeyError, ValueError) as err:
                raise DataError(f"{path}: not a CIFAR batch (keys 'data' N x 3072 and '{label_key}'): {err}") from None
            if len(data) != len(labels):
                raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
            xs.append(data.transpose(0, 2, 3, 1))
            ys.append(labels)
        x[split], y[split] = np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)
    meta_file = folder / meta.meta["filename"]
    classes = _read_batch(meta_file, meta.meta["md5"] if verify else None)[meta.meta["key"]]
    return Splits(x, y, [str(c) for c in classes], origin=str(folder))


# --------------------------------------------------------------------------- class folders
def is_archive(path: Path) -> bool:
    return path.is_file() and str(path).lower().endswith(ARCHIVE_SUFFIXES)


def has_class_folders(root: Path) -> bool:
    root = Path(root)
    if is_archive(root):
        return True  # inspected while reading
    return root.is_dir() and any((root / s).is_dir() for s in TRAIN_SPLIT_NAMES)


def _split_class(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(split, class) of an image path ``[prefix/]split/class/file``."""
    if len(parts) < 3:
        return None
    split, cls = parts[-3], parts[-2]
    split = split.lower()
    if split in TRAIN_SPLIT_NAMES or split in EVAL_SPLIT_NAMES:
        return split, cls
    return None


def _iter_archive(path: Path):
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if not member.isfile() or Path(member.name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                key = _split_class(Path(member.name).parts)
                if key is None:
                    continue
                fh = tar.extractfile(member)
                yield key, member.name, fh.read()
    except Exception as err:  # tarfile/gzip/zlib errors of a truncated or corrupt archive
        raise DataError(f"{path}: archive is truncated or corrupt ({type(err).__name__}: {err})") from None


def _iter_directory(root: Path):
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for cls_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for img in sorted(cls_dir.iterdir()):
                if img.suffix.lower() in IMAGE_SUFFIXES:
                    key = _split_class(img.relative_to(root).parts)
                    if key is not None:
                        yield key, str(img), img.read_bytes()


def _decode(name: str, blob: bytes, size: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{name}: not a readable image ({err})") from None


def _describe_top(root: Path) -> str:
    try:
        if is_archive(root):
            with tarfile.open(root, "r|*") as tar:
                names = sorted({Path(m.name).parts[0] for _, m in zip(range(50), tar, strict=False)})
        else:
            names = sorted(p.name for p in Path(root).iterdir())[:10]
    except Exception:  # the description is best-effort
        return "nothing readable"
    return ", ".join(names) if names else "nothing"


def _cache_path(root: Path, image_size: int, cache_dir: Path) -> Path:
    st = root.stat()
    ident = f"{root.resolve()}|{st.st_size}|{st.st_mtime_ns}|{image_size}|v{CACHE_VERSION}"
    digest = hashlib.sha1(ident.encode()).hexdigest()[:12]
    stem = root.name.split(".")[0] or "data"
    return Path(cache_dir).expanduser() / f"{stem}-{image_size}px-{digest}.npz"


def load_folder(root: Path, image_size: int, cache_dir: Path | None) -> Splits:
    """Decode a class-folder set (directory or tar archive) once; reuse the uint8 cache after."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such file or directory")
    if not os.access(root, os.R_OK):
        raise DataError(f"{root}: not readable")
    cache = _cache_path(root, image_size, cache_dir) if cache_dir else None
    with _decoding_lock(cache):  # runs side by side: one decodes, the others wait and read its cache
        return _load_folder(root, image_size, cache)


def _load_folder(root: Path, image_size: int, cache: Path | None) -> Splits:
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as z:
                x = {s: z[f"x_{s}"] for s in z["splits"]}
                y = {s: z[f"y_{s}"] for s in z["splits"]}
                return Splits(x, y, [str(c) for c in z["classes"]], origin=str(root))
        except Exception:
            cache.unlink(missing_ok=True)  # a broken cache is rebuilt, never trusted

    items = _iter_archive(root) if is_archive(root) else _iter_directory(root)
    grouped: dict[str, list[tuple[str, str, bytes]]] = {}
    for (split, cls), name, blob in items:
        grouped.setdefault(split, []).append((cls, name, blob))
    train = [s for s in grouped if s in TRAIN_SPLIT_NAMES]
    evals = [s for s in grouped if s in EVAL_SPLIT_NAMES]
    if not train or not evals:
        raise DataError(
            f"{root}: no class folders found; expected train/<class>/<image> and test/<class>/<image> "
            f"(or val/), found: {_describe_top(root)}"
        )
    classes = sorted({cls for cls, _, _ in grouped[train[0]]})
    index = {c: i for i, c in enumerate(classes)}
    x, y = {}, {}
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for split in (train[0], evals[0]):
            entries = sorted(grouped[split], key=lambda e: (e[0], e[1]))
            unknown = sorted({c for c, _, _ in entries} - set(index))
            if unknown:
                raise DataError(f"{root}: {split} has classes missing from train: {', '.join(unknown[:5])}")
            images = list(pool.map(lambda e: _decode(e[1], e[2], image_size), entries, chunksize=256))
            labels = np.array([index[c] for c, _, _ in entries], dtype=np.int64)
            # a fixed shuffle, the same for every run, so that "the first N" is a balanced subset
            order = np.random.default_rng(0).permutation(len(images))
            name = "train" if split in TRAIN_SPLIT_NAMES else "test"
            x[name] = np.stack(images)[order]
            y[name] = labels[order]
    out = Splits(x, y, classes, origin=str(root))
    if cache is not None:
        _write_cache(cache, out)
    return out


@contextlib.contextmanager
def _decoding_lock(cache: Path | None):
    """An exclusive lock on ``<cache>.lock`` (POSIX), so that one process decodes and writes the cache."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks: every process decodes on its own, as before
        fcntl = None
    if cache is None or fcntl is None:
        yield
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fh = open(cache.with_name(cache.name + ".lock"), "a")  # noqa: SIM115 (closed below)
    except OSError:  # an unwritable cache dir: no cache, no lock
        yield
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # releases the lock


def _write_cache(path: Path, splits: Splits) -> None:
    try:
        with atomic_file(path, "wb", sync=False) as fh:
            arrays = {f"x_{s}": a for s, a in splits.x.items()} | {f"y_{s}": a for s, a in splits.y.items()}
            np.savez(fh, splits=np.array(list(splits.x)), classes=np.array(splits.classes), **arrays)
    except OSError:
        pass  # the cache is an optimisation: an unwritable cache dir must not stop a run
