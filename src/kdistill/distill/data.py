"""Data sets held whole as tensors, the IDX reader for MNIST-style files, and batch jitter.

Small image sets fit in memory many times over, so a data set here is two tensors, images
(N, C, H, W) as float32 in [0, 1] and labels (N,) as int64, and batches are index slices: no
per-sample Python on the training path.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..files import sha256_file
from .labels import UNLABELLED, check_labels, labelled_mask

__all__ = [
    "ArrayDataset",
    "DataSplits",
    "read_idx",
    "load_idx_folder",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_kmnist",
    "load_npz",
    "load_letter",
    "check_labels",
    "UNLABELLED",
    "DATASETS",
]


@dataclass
class ArrayDataset:
    """Inputs and labels as tensors; `y` may be None for an unlabelled transfer set. With
    `partial_labels=True`, `y` may mark unlabelled examples with UNLABELLED (-1): the hard
    term skips them (see kdistill.distill.labels); without it a -1 is refused."""

    x: torch.Tensor
    y: torch.Tensor | None
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    name: str = "data"
    partial_labels: bool = False

    def __post_init__(self) -> None:
        # Accept what users have: numpy arrays, float64 inputs, labels of any integer dtype.
        if not isinstance(self.partial_labels, bool):
            raise ValueError(f"{self.name}: partial_labels must be true or false, got "
                             f"{self.partial_labels!r}")
        if not isinstance(self.x, torch.Tensor):
            self.x = torch.as_tensor(np.asarray(self.x))
        if self.x.dtype == torch.float64:
            self.x = self.x.float()
        if self.x.dim() == 0:
            raise ValueError(f"{self.name}: inputs must have a batch dimension, got a scalar")
        if self.y is not None:
            if not isinstance(self.y, torch.Tensor):
                self.y = torch.as_tensor(np.asarray(self.y))
            if len(self.y) != len(self.x):
                raise ValueError(f"{self.name}: {len(self.x)} inputs but {len(self.y)} labels")
            check_labels(self.y, self.num_classes, self.name, partial=self.partial_labels)
            self.y = self.y.long()
        if self.partial_labels and self.y is None:
            raise ValueError(f"{self.name}: partial_labels=True needs labels y (use "
                             f"{UNLABELLED} for each unlabelled example)")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: torch.Tensor | np.ndarray, name: str | None = None) -> ArrayDataset:
        index = torch.as_tensor(index, dtype=torch.long)
        return ArrayDataset(
            self.x[index], None if self.y is None else self.y[index], self.num_classes,
            self.class_names, name or self.name, self.partial_labels,
        )

    @property
    def n_labelled(self) -> int:
        """Examples with a label (all of them unless the set is partially labelled)."""
        if self.y is None:
            return 0
        return int(labelled_mask(self.y).sum()) if self.partial_labels else len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def in_features(self) -> int:
        return int(np.prod(self.input_shape))


@dataclass
class DataSplits:
    """A train and a test split that one model can take: both non-empty, inputs alike."""

    train: ArrayDataset
    test: ArrayDataset
    name: str
    source: str

    def __post_init__(self) -> None:
        for part in (self.train, self.test):
            if len(part) == 0:
                raise ValueError(f"{self.name}: the {part.name} split is empty")
        if self.train.input_shape != self.test.input_shape:
            raise ValueError(f"{self.name}: train inputs have shape "
                             f"{list(self.train.input_shape)} ({self.train.in_features} "
                             f"features) but test inputs {list(self.test.input_shape)} "
                             f"({self.test.in_features})")


# ----------------------------------------------------------------------------- IDX files

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped), checking its header against its length."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says {dims} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes: the file is corrupt or truncated"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


_IDX_PARTS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find_part(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_folder(
    folder: str | os.PathLike, name: str, class_names: list[str]
) -> DataSplits:
    """Load the four standard IDX files (train/t10k images and labels) from one folder."""
    folder = Path(folder)
    arrays = {}
    for key, stem in _IDX_PARTS.items():
        path = _find_part(folder, stem)
        if path is None:
            raise FileNotFoundError(f"{folder}: missing {stem}[.gz]")
        arrays[key] = read_idx(path)
        if arrays[key].dtype.kind == "f" and not np.isfinite(arrays[key]).all():
            raise ValueError(f"{path}: the {key.replace('_', ' ')} contain NaN or infinite "
                             "values")
    splits = []
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{folder}: {part} images {images.shape} and labels {labels.shape} "
                             "do not match")
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        y = torch.from_numpy(labels.astype(np.int64))
        splits.append(ArrayDataset(x, y, len(class_names), class_names, f"{name}-{part}"))
    return DataSplits(splits[0], splits[1], name, str(folder))


# SHA-256 of the gzipped files as distributed by each data set's authors.
_REMOTE = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz":
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz":
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz":
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz":
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz":
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz":
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz":
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz":
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
    "kmnist": (
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        {
            "train-images-idx3-ubyte.gz":
                "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
            "train-labels-idx1-ubyte.gz":
                "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
            "t10k-images-idx3-ubyte.gz":
                "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
            "t10k-labels-idx1-ubyte.gz":
                "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
        },
    ),
}

_CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}

_SYSTEM_FOLDERS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"]}


def data_home() -> Path:
    return Path(os.environ.get("KDISTILL_DATA", Path.home() / ".cache" / "kdistill"))



def download_idx(name: str, folder: Path) -> Path:
    """Download a data set's four files into `folder`, each checked against its SHA-256."""
    base, files = _REMOTE[name]
    folder.mkdir(parents=True, exist_ok=True)
    for fname, digest in files.items():
        target = folder / fname
        if target.is_file() and sha256_file(target) == digest:
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=fname + ".")
        os.close(fd)
        try:
            with urllib.request.urlopen(base + fname, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
            got = sha256_file(Path(tmp))
            if got != digest:
                raise ValueError(f"{base + fname}: SHA-256 mismatch (got {got}, want {digest})")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return folder


def _load_named_idx(name: str, root: str | os.PathLike | None, download: bool) -> DataSplits:
    candidates = [Path(root)] if root else []
    candidates += [data_home() / name] + [Path(p) for p in _SYSTEM_FOLDERS.get(name, [])]
    for folder in candidates:
        if folder.is_dir() and all(_find_part(folder, s) for s in _IDX_PARTS.values()):
            return load_idx_folder(folder, name, _CLASS_NAMES[name])
    if root and Path(root).exists():
        # A folder was named and exists but lacks files: say which, do not look elsewhere.
        return load_idx_folder(root, name, _CLASS_NAMES[name])
    if download:
        try:
            folder = download_idx(name, Path(root) if root else data_home() / name)
        except OSError as exc:
            raise FileNotFoundError(f"{name}: download failed ({exc}); {_how_to_get(name)}") \
                from None
        return load_idx_folder(folder, name, _CLASS_NAMES[name])
    raise FileNotFoundError(f"{name}: IDX files not found in {', '.join(map(str, candidates))}; "
                            f"{_how_to_get(name)}")


def _how_to_get(name: str) -> str:
    hint = ("put the four *-ubyte.gz files in a folder and pass it (--data-dir), or set "
            "KDISTILL_DATA, or pass --download where a network exists "
            f"(files from {_REMOTE[name][0]})")
    if name == "fashion-mnist":
        hint = "on Debian/Ubuntu: apt-get install dataset-fashion-mnist; or " + hint
    return hint


def load_mnist(root: str | os.PathLike | None = None, download: bool = False) -> DataSplits:
    return _load_named_idx("mnist", root, download)


def load_fashion_mnist(root: str | os.PathLike | None = None, download: bool = False) -> DataSplits:
    return _load_named_idx("fashion-mnist", root, download)


def load_kmnist(root: str | os.PathLike | None = None, download: bool = False) -> DataSplits:
    return _load_named_idx("kmnist", root, download)


def load_digits(root: str | os.PathLike | None = None, download: bool = False,
                test_fraction: float = 0.25, seed: int = 0) -> DataSplits:
    """scikit-learn's 8x8 handwritten digits (1,797 images, shipped inside scikit-learn),
    split once, stratified, with a fixed seed so every run sees the same test set."""
    from sklearn.datasets import load_digits as _sk_digits
    from sklearn.model_selection import train_test_split

    bunch = _sk_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                              random_state=seed, stratify=labels)
    names = [str(i) for i in range(10)]
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    return DataSplits(
        ArrayDataset(x[tr], y[tr], 10, names, "digits-train"),
        ArrayDataset(x[te], y[te], 10, names, "digits-test"),
        "digits", "sklearn.datasets.load_digits",
    )


def load_npz(path: str | os.PathLike) -> DataSplits:
    """Your own data: an .npz with x_train, y_train, x_test, y_test (images (N, H, W),
    (N, C, H, W) or feature rows (N, D); labels integers 0..K-1). See kdistill.distill.npz."""
    from .npz import load_npz as _load_npz

    return _load_npz(path)


LETTER_TRAIN_ROWS = 16_000  # the UCI convention: first 16,000 rows train, last 4,000 test


def load_letter(root: str | os.PathLike | None = None, download: bool = False) -> DataSplits:
    """UCI Letter Recognition (20,000 rows, 16 integer features, 26 letters) from Debian's
    r-cran-mlbench (`root`: the folder holding LetterRecognition.rda). The conventional split:
    first 16,000 rows train, last 4,000 test. Features are standardized with the training
    split's mean and standard deviation so that an MLP trains with default learning rates.
    `download` is ignored: the file comes with the Debian package."""
    from ..tabular.encoding import load_mlbench

    frame = load_mlbench("LetterRecognition", root)
    names = [chr(ord("A") + i) for i in range(26)]
    letters = frame["lettr"].astype(str).to_numpy()
    unknown = sorted(set(letters) - set(names))
    if unknown or len(frame) <= LETTER_TRAIN_ROWS:
        raise ValueError(f"LetterRecognition: expected 20,000 rows of letters A-Z, got "
                         f"{len(frame)} rows and labels {unknown[:5]}")
    y = np.searchsorted(np.array(names), letters).astype(np.int64)
    x = frame.drop(columns=["lettr"]).to_numpy(dtype=np.float64)
    mean = x[:LETTER_TRAIN_ROWS].mean(axis=0)
    std = x[:LETTER_TRAIN_ROWS].std(axis=0)
    x = ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    tr, te = slice(0, LETTER_TRAIN_ROWS), slice(LETTER_TRAIN_ROWS, None)
    return DataSplits(
        ArrayDataset(xt[tr], yt[tr], 26, names, "letter-train"),
        ArrayDataset(xt[te], yt[te], 26, names, "letter-test"),
        "letter", "UCI Letter Recognition via r-cran-mlbench (LetterRecognition.rda); rows "
        "1-16000 train, 16001-20000 test; features standardized with train mean/std",
    )


DATASETS = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "kmnist": load_kmnist,
    "letter": load_letter,
}


def load_dataset(name: str, root: str | os.PathLike | None = None,
                 download: bool = False) -> DataSplits:
    if str(name).endswith(".npz"):
        return load_npz(name)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name](root=root, download=download)
