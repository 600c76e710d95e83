import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from kdistill.distill.augment import jitter
from kdistill.distill.data import (
    ArrayDataset,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_idx_folder,
    load_mnist,
    load_npz,
    read_idx,
)


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> Path:
    code = {np.uint8: 0x08, np.int32: 0x0C}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    body = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(header + body)
    return path


def make_idx_folder(folder: Path, n_train=20, n_test=10, label_max=9) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{part}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz",
                  (np.arange(n) % (label_max + 1)).astype(np.uint8))
    return folder


def test_read_idx_roundtrip_gz_and_raw(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", a)), a)
    b = np.array([1, -2, 300000], dtype=np.int32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "b", b, gz=False)), b)


def test_read_idx_rejects_corrupt_files(tmp_path):
    a = np.zeros((3, 4, 4), dtype=np.uint8)
    path = write_idx(tmp_path / "a", a, gz=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_idx(path)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(tmp_path / "bad.gz")


def test_idx_folder_scaling_and_shapes(tmp_path):
    splits = load_idx_folder(make_idx_folder(tmp_path / "m"), "mnist", [str(i) for i in range(10)])
    assert splits.train.x.shape == (20, 1, 28, 28) and splits.test.x.shape == (10, 1, 28, 28)
    assert splits.train.x.dtype == torch.float32
    assert 0.0 <= float(splits.train.x.min()) and float(splits.train.x.max()) <= 1.0
    raw = read_idx(tmp_path / "m" / "train-images-idx3-ubyte.gz")
    assert torch.allclose(splits.train.x[3, 0], torch.from_numpy(raw[3] / 255.0).float())


def test_mnist_from_folder_and_clear_message_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("KDISTILL_DATA", str(tmp_path / "nowhere"))
    splits = load_mnist(make_idx_folder(tmp_path / "mnist"))
    assert len(splits.train) == 20
    with pytest.raises(FileNotFoundError, match="--download"):
        load_mnist()
    with pytest.raises(FileNotFoundError, match="missing train-labels"):
        (tmp_path / "partial").mkdir()
        write_idx(tmp_path / "partial" / "train-images-idx3-ubyte.gz",
                  np.zeros((1, 28, 28), np.uint8))
        load_mnist(tmp_path / "partial")


def test_labels_out_of_range_rejected(tmp_path):
    folder = make_idx_folder(tmp_path / "m", label_max=12)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        load_mnist(folder)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package():
    splits = load_fashion_mnist()
    assert splits.train.x.shape == (60000, 1, 28, 28) and len(splits.test) == 10000
    assert torch.bincount(splits.train.y).tolist() == [6000] * 10
    assert torch.bincount(splits.test.y).tolist() == [1000] * 10
    assert splits.train.class_names[9] == "Ankle boot"


def test_digits_split_is_fixed_and_stratified():
    a, b = load_digits(), load_digits()
    assert a.train.x.shape == (1347, 1, 8, 8) and len(a.test) == 450
    assert torch.equal(a.test.x, b.test.x)
    assert float(a.train.x.max()) == 1.0
    counts = torch.bincount(a.test.y)
    assert int(counts.min()) >= 43 and int(counts.max()) <= 47  # classes hold 174-183 images


def test_npz_loader_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((8, 5)), y_train=np.arange(8) % 4,
             x_test=rng.random((4, 5)), y_test=np.arange(4))
    splits = load_dataset(str(tmp_path / "d.npz"))
    assert splits.train.num_classes == 4 and splits.train.in_features == 5
    np.savez(tmp_path / "bad.npz", x_train=rng.random((8, 5)))
    with pytest.raises(ValueError, match="missing array"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "neg.npz", x_train=rng.random((2, 5)), y_train=np.array([0, -1]),
             x_test=rng.random((1, 5)), y_test=np.array([0]))
    with pytest.raises(ValueError, match="labels must lie"):
        load_npz(tmp_path / "neg.npz")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar-1000")


def slow_shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference: move every pixel by (dy, dx), zeros where nothing moved in."""
    c, h, w = img.shape
    out = torch.zeros_like(img)
    for i in range(h):
        for j in range(w):
            si, sj = i - dy, j - dx
            if 0 <= si < h and 0 <= sj < w:
                out[:, i, j] = img[:, si, sj]
    return out


def test_jitter_matches_per_image_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 2, 7, 9, generator=g)
    shifts = torch.randint(-2, 3, (2, 16), generator=g)
    got = jitter(x, 2, shifts=shifts)
    for n in range(16):
        ref = slow_shift(x[n], int(shifts[0, n]), int(shifts[1, n]))
        assert torch.equal(got[n], ref)


def test_jitter_draws_every_shift_and_is_seeded():
    x = torch.zeros(500, 1, 5, 5)
    x[:, :, 2, 2] = 1.0  # a single bright pixel shows where the shift put it
    out = jitter(x, 2, torch.Generator().manual_seed(1))
    pos = out.view(500, -1).argmax(1)
    rows, cols = pos // 5 - 2, pos % 5 - 2
    assert set(rows.tolist()) == {-2, -1, 0, 1, 2} and set(cols.tolist()) == {-2, -1, 0, 1, 2}
    assert torch.equal(out, jitter(x, 2, torch.Generator().manual_seed(1)))
    assert jitter(x, 0) is x


def test_dataset_checks_lengths():
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        ArrayDataset(torch.zeros(3, 2), torch.tensor([0, 1]), 2)


@pytest.mark.skipif(not Path("/usr/lib/R/site-library/mlbench/data/LetterRecognition.rda")
                    .is_file(), reason="Debian's r-cran-mlbench is not installed")
def test_letter_recognition_split_and_standardization():
    pytest.importorskip("rdata")
    splits = load_dataset("letter")
    assert (len(splits.train), len(splits.test)) == (16000, 4000)
    assert splits.train.input_shape == (16,) and splits.train.num_classes == 26
    assert splits.train.class_names[0] == "A" and splits.train.class_names[-1] == "Z"
    # The UCI file starts with a 'T' and an 'I', and every letter occurs in both splits.
    assert splits.train.class_names[int(splits.train.y[0])] == "T"
    assert splits.train.class_names[int(splits.train.y[1])] == "I"
    assert torch.bincount(splits.test.y, minlength=26).min() > 100
    # Standardized with the training split's statistics only.
    assert torch.allclose(splits.train.x.mean(0), torch.zeros(16), atol=1e-4)
    assert torch.allclose(splits.train.x.std(0, unbiased=False), torch.ones(16), atol=1e-4)
    assert splits.test.x.mean(0).abs().max() > 1e-3


def test_letter_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="r-cran-mlbench"):
        load_dataset("letter", tmp_path)
