"""Module 07 (tinytorch.data): loader semantics, batch transforms, and the real on-disk formats.

Every data file here is built by the test in the exact format of the real one: CIFAR-10 python
batches (pickled dicts with bytes keys) in a `cifar-10-python.tar.gz`, the JPEG tree in a `.tar.xz`,
and (gzipped) IDX files. Mirrors and cache are temporary folders given through $TINYTORCH_DATA and
$TINYTORCH_CACHE.
"""
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinytorch.core.tensor import Tensor
from tinytorch.data import (CIFAR10, IDX_SOURCES, Compose, DataFileError, DataLoader, Dataset, Normalize, RandomCrop,
                            RandomHorizontalFlip, RemoteFile, TensorDataset, channel_stats, check_member, collate,
                            data_mirrors, load_cifar10, load_mnist, parse_idx, read_pickle, safe_extract,
                            train_val_split)


@pytest.fixture
def places(tmp_path, monkeypatch):
    """An empty read-only mirror and an empty cache, used instead of the real ones."""
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    monkeypatch.setenv("TINYTORCH_DATA", str(mirror))
    monkeypatch.setenv("TINYTORCH_CACHE", str(cache))
    monkeypatch.setattr("tinytorch.data.data_mirrors", lambda: [mirror])  # hide ../shared/data
    return mirror, cache


def snapshot(folder):
    """Every file under `folder` with its size and modification time (to prove nothing was written)."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*")}


def md5(data):
    return hashlib.md5(data).hexdigest()


# --- DataLoader semantics ---------------------------------------------------------------------------

@given(n=st.integers(0, 60), batch_size=st.integers(1, 17), shuffle=st.booleans(), drop_last=st.booleans(),
       seed=st.integers(0, 2**32 - 1), epoch=st.integers(0, 5))
def test_every_example_once_per_epoch(n, batch_size, shuffle, drop_last, seed, epoch):
    loader = DataLoader(TensorDataset(np.arange(n) * 10, np.arange(n)), batch_size, shuffle, drop_last, seed=seed)
    batches = list(loader.batches(epoch))
    assert len(batches) == len(loader) == (n // batch_size if drop_last else -(-n // batch_size))
    assert all(len(y) == batch_size for _, y in batches[:-1] if batches)
    seen = np.concatenate([y.data for _, y in batches]) if batches else np.array([], dtype=int)
    assert len(set(seen.tolist())) == len(seen), "no example twice"
    assert len(seen) == (n - n % batch_size if drop_last else n)
    assert all(np.array_equal(x.data, y.data * 10) for x, y in batches), "fields stay aligned"
    if not shuffle:
        assert np.array_equal(seen, np.arange(len(seen)))


@given(start=st.integers(0, 7), epoch=st.integers(0, 3))
def test_resuming_mid_epoch_gives_the_same_batches(start, epoch):
    images = np.random.default_rng(0).integers(0, 255, size=(29, 3, 6, 6), dtype=np.uint8)
    pipeline = Compose([RandomCrop(6, padding=2), RandomHorizontalFlip()])
    loader = DataLoader(TensorDataset(images, np.arange(29)), 4, shuffle=True, transform=pipeline, seed=11)
    full = list(loader.batches(epoch))
    resumed = list(DataLoader(TensorDataset(images, np.arange(29)), 4, shuffle=True, transform=pipeline,
                              seed=11).batches(epoch, start=start))
    assert len(resumed) == len(full) - start
    for (x1, y1), (x2, y2) in zip(full[start:], resumed):
        assert np.array_equal(x1.data, x2.data) and np.array_equal(y1.data, y2.data)


def test_iteration_moves_to_a_new_epoch_and_labels_stay_integers():
    loader = DataLoader(TensorDataset(np.zeros((10, 2), np.float32), np.arange(10)), 3, shuffle=True, seed=5)
    first = np.concatenate([y.data for _, y in loader])
    second = np.concatenate([y.data for _, y in loader])
    assert loader.epoch == 2 and not np.array_equal(first, second)
    x, y = next(iter(loader))
    assert isinstance(x, Tensor) and x.dtype == np.float32 and y.dtype == np.int64


def test_vectorised_and_per_example_batches_agree():
    images = np.random.default_rng(1).standard_normal((12, 2, 3)).astype(np.float32)
    labels = np.arange(12)

    class PerExample(Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            return images[i], labels[i]

    indices = np.array([3, 3, 0, 11])
    for mine, reference in zip(TensorDataset(images, labels).get_batch(indices), PerExample().get_batch(indices)):
        assert np.array_equal(mine, reference)
    assert np.array_equal(collate([(1, 2.0), (3, 4.0)])[1], [2.0, 4.0])


def test_loader_refuses_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(TensorDataset(np.arange(3)), batch_size=0)
    with pytest.raises(ValueError, match=r"\[3, 2\]"):
        TensorDataset(np.arange(3), np.arange(2))


# --- transforms ---------------------------------------------------------------------------------------

@given(n=st.integers(1, 6), size=st.integers(1, 7), padding=st.integers(0, 3), seed=st.integers(0, 1000))
def test_random_crop_matches_a_loop_over_images(n, size, padding, seed):
    images = np.random.default_rng(seed).integers(1, 255, size=(n, 2, 7, 7)).astype(np.uint8)
    if size > 7 + 2 * padding:
        return
    out = RandomCrop(size, padding)(images, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 7 + 2 * padding - size + 1, size=n)
    cols = rng.integers(0, 7 + 2 * padding - size + 1, size=n)
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    expected = np.stack([padded[i, :, rows[i]:rows[i] + size, cols[i]:cols[i] + size] for i in range(n)])
    assert out.dtype == images.dtype and np.array_equal(out, expected)


def test_flip_normalize_and_channel_stats():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(9000, 3, 4, 4)).astype(np.uint8)
    mean, std = channel_stats(images, chunk=1000)
    as_float = images.astype(np.float64)
    assert np.allclose(mean, as_float.mean(axis=(0, 2, 3))) and np.allclose(std, as_float.std(axis=(0, 2, 3)))
    normalised = Normalize(mean, std)(images)
    assert normalised.dtype == np.float32 and np.allclose(normalised.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    flipped = RandomHorizontalFlip(0.5)(images[:50], np.random.default_rng(3))
    chosen = np.random.default_rng(3).random(50) < 0.5
    assert np.array_equal(flipped[chosen], images[:50][chosen][..., ::-1])
    assert np.array_equal(flipped[~chosen], images[:50][~chosen])
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        RandomHorizontalFlip()(np.zeros((4, 4)), rng)


def test_train_val_split_is_seeded_and_disjoint():
    images, labels = np.arange(100) * 2, np.arange(100)
    (tx, ty), (vx, vy) = train_val_split(images, labels, 20, seed=4)
    assert len(vy) == 20 and len(ty) == 80 and not set(ty) & set(vy) and np.array_equal(tx, ty * 2)
    assert np.array_equal(train_val_split(images, labels, 20, seed=4)[1][1], vy)


# --- IDX ----------------------------------------------------------------------------------------------

def idx_bytes(array, code):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C),
                                        (np.float32, 0x0D), (np.float64, 0x0E)])
def test_idx_every_type(dtype, code):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    out = parse_idx(idx_bytes(array, code))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and np.array_equal(out, array)


def write_idx_set(folder, images, labels, gzipped=True):
    """The four MNIST files (train and t10k, images and labels), in the real IDX layout."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for prefix, (x, y) in {"train": (images, labels), "t10k": (images[:3], labels[:3])}.items():
        for kind, array, code in (("images-idx3", x, 0x08), ("labels-idx1", y, 0x08)):
            name, raw = f"{prefix}-{kind}-ubyte", idx_bytes(array.astype(np.uint8), code)
            path = folder / (name + ".gz" if gzipped else name)
            path.write_bytes(gzip.compress(raw) if gzipped else raw)
            files[name] = (md5(path.read_bytes()), md5(raw))
    return files


@pytest.mark.parametrize("gzipped", [True, False])
def test_load_mnist_from_a_mirror(places, gzipped):
    mirror, cache = places
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, size=(7, 28, 28)), rng.integers(0, 10, size=7)
    files = write_idx_set(mirror / "mnist", images, labels, gzipped)
    before = snapshot(mirror)
    (tx, ty), (sx, sy) = load_mnist("mnist", sources={"mnist": ((), files)}, download_ok=False)
    assert tx.shape == (7, 1, 28, 28) and tx.dtype == np.uint8 and np.array_equal(tx[:, 0], images)
    assert ty.dtype == np.int64 and np.array_equal(ty, labels) and np.array_equal(sy, labels[:3])
    assert snapshot(mirror) == before and not cache.exists(), "mirrors are read, never written"


def test_load_mnist_refuses_truncated_or_foreign_files(places):
    mirror, _ = places
    rng = np.random.default_rng(0)
    files = write_idx_set(mirror / "mnist", rng.integers(0, 256, size=(5, 28, 28)), np.arange(5))
    path = mirror / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.gz.*MD5"):
        load_mnist("mnist", sources={"mnist": ((), files)}, download_ok=False)
    with pytest.raises(DataFileError, match="promises"):
        load_mnist("mnist", sources={"mnist": ((), {k: (a, None) for k, (a, _) in files.items()})}, download_ok=False)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.gz.*decompressed"):
        load_mnist("mnist", sources={"mnist": ((), files)}, download_ok=False)


def test_mnist_download_path_verifies_the_published_checksum(places, tmp_path):
    _, cache = places
    server = tmp_path / "server"
    files = write_idx_set(server, np.zeros((2, 28, 28)), np.array([1, 2]))
    url = server.as_uri() + "/"
    (tx, ty), _ = load_mnist("mnist", sources={"mnist": ((url,), files)}, progress=False)
    assert np.array_equal(ty, [1, 2]) and (cache / "mnist" / "train-labels-idx1-ubyte.gz").is_file()
    wrong = {k: ("0" * 32, raw) for k, (_, raw) in files.items()}
    for f in (cache / "mnist").iterdir():
        f.unlink()
    with pytest.raises(DataFileError, match="(?s)could not download.*md5"):
        load_mnist("mnist", sources={"mnist": ((url,), wrong)}, progress=False)
    assert list((cache / "mnist").iterdir()) == [], "a download that fails its checksum leaves nothing behind"


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package(places):
    (tx, ty), (sx, sy) = load_mnist("fashion-mnist", download_ok=False)
    assert tx.shape == (60000, 1, 28, 28) and sx.shape == (10000, 1, 28, 28)
    assert np.all(np.bincount(ty) == 6000) and np.all(np.bincount(sy) == 1000)


# --- CIFAR-10: the canonical python archive -----------------------------------------------------------

def cifar_batches(per_batch=4, seed=0):
    """The canonical batch files' contents: name -> (pickle bytes, images (N,3,32,32), labels)."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        record = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                  b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)]}
        batches[name] = (pickle.dumps(record, protocol=2), data.reshape(-1, 3, 32, 32), labels)
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [c.encode() for c in CIFAR10.classes], b"num_vis": 3072}
    batches["batches.meta"] = (pickle.dumps(meta, protocol=2), None, None)
    return batches


def write_tar(path, entries, mode="w:gz"):
    """A tar archive of (name, bytes) regular files, plus the folder entry, like the real one."""
    with tarfile.open(path, mode) as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_cifar_archive(path, batches):
    """The canonical cifar-10-python.tar.gz layout holding `batches`."""
    return write_tar(path, [(f"cifar-10-batches-py/{n}", raw) for n, (raw, _, _) in batches.items()])


def tiny_source(archive, batches):
    return replace(CIFAR10, archive=RemoteFile(archive.name, (archive.as_uri(),), md5(archive.read_bytes()),
                                              hashlib.sha256(archive.read_bytes()).hexdigest()),
                   batch_md5={name: md5(raw) for name, (raw, _, _) in batches.items()})


def check_cifar(loaded, batches):
    (tx, ty), (sx, sy) = loaded
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    assert tx.dtype == np.uint8 and tx.shape == (20, 3, 32, 32) and ty.dtype == np.int64
    assert np.array_equal(tx, np.concatenate([b[1] for b in train])) and ty.tolist() == sum((b[2] for b in train), [])
    assert np.array_equal(sx, batches["test_batch"][1]) and sy.tolist() == batches["test_batch"][2]


def test_cifar_archive_in_a_mirror_is_verified_and_extracted_into_the_cache(places, tmp_path):
    mirror, cache = places
    batches = cifar_batches()
    archive = write_cifar_archive(mirror / "cifar-10-python.tar.gz", batches)
    source = tiny_source(archive, batches)
    before = snapshot(mirror)
    check_cifar(load_cifar10(source, download_ok=False), batches)
    assert (cache / "cifar10" / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert snapshot(mirror) == before
    archive.unlink()
    check_cifar(load_cifar10(source, download_ok=False), batches)  # the extracted cache alone suffices


def test_cifar_download_path(places, tmp_path):
    _, cache = places
    batches = cifar_batches(seed=1)
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", batches)
    check_cifar(load_cifar10(tiny_source(archive, batches), progress=False), batches)
    assert (cache / "cifar10" / "cifar-10-python.tar.gz").is_file()


def test_truncated_cifar_archive_is_refused_and_nothing_is_written(places):
    mirror, cache = places
    batches = cifar_batches()
    archive = write_cifar_archive(mirror / "cifar-10-python.tar.gz", batches)
    source = tiny_source(archive, batches)
    archive.write_bytes(archive.read_bytes()[:-300])
    with pytest.raises(DataFileError, match=r"cifar-10-python\.tar\.gz: md5 .*replace this mirror copy"):
        load_cifar10(source, download_ok=False)
    assert not (cache / "cifar10" / "cifar-10-batches-py").exists()


def test_damaged_batch_in_the_cache_names_the_file(places):
    mirror, cache = places
    batches = cifar_batches()
    archive = write_cifar_archive(mirror / "cifar-10-python.tar.gz", batches)
    source = tiny_source(archive, batches)
    load_cifar10(source, download_ok=False)
    batch = cache / "cifar10" / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(DataFileError, match="data_batch_2.*delete that folder"):
        load_cifar10(source, download_ok=False)


def test_unsafe_archives_are_refused_before_anything_is_written(tmp_path):
    for name, kind in (("../escape", tarfile.REGTYPE), ("/abs/path", tarfile.REGTYPE),
                       ("cifar-10-batches-py/link", tarfile.SYMTYPE)):
        archive = tmp_path / "evil.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            ok = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
            ok.size = 3
            tar.addfile(ok, io.BytesIO(b"abc"))
            bad = tarfile.TarInfo(name)
            bad.type, bad.linkname = kind, "/etc/passwd"
            tar.addfile(bad, io.BytesIO(b"") if kind != tarfile.REGTYPE else io.BytesIO(b""))
        destination = tmp_path / "out" / "cifar-10-batches-py"
        with pytest.raises(DataFileError, match="unsafe archive entry"):
            safe_extract(archive, ["cifar-10-batches-py/data_batch_1"], destination)
        assert not destination.exists() and not (tmp_path / "escape").exists()
        assert list((tmp_path / "out").iterdir()) == [], "no temporary folder left behind"


def test_pickles_that_run_code_are_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": os.system}, protocol=2))
    with pytest.raises(DataFileError, match="posix.system|os.system|nt.system"):
        read_pickle(path)


# --- CIFAR-10: the JPEG copy ---------------------------------------------------------------------------

def jpeg_tree(path, per_class):
    """A tiny tree train|test/<class>/NNNN.jpg in a .tar.xz, like cifar10-jpg.tar.xz; flat colours survive JPEG."""
    from PIL import Image
    colours = {}
    with tarfile.open(path, "w:xz") as tar:
        for split, count in per_class.items():
            for label, name in enumerate(CIFAR10.classes):
                for i in range(count):
                    colour = (25 * label, 200 - 10 * i, 30 + 60 * (split == "test"))
                    buffer = io.BytesIO()
                    Image.new("RGB", (32, 32), colour).save(buffer, format="JPEG", quality=95)
                    info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.jpg")
                    info.size = len(buffer.getvalue())
                    tar.addfile(info, io.BytesIO(buffer.getvalue()))
                    colours.setdefault(split, []).append((label, colour))
    return colours


def test_jpeg_copy_is_decoded_once_into_the_cache(places):
    mirror, cache = places
    (mirror / "cifar10").mkdir()
    archive = mirror / "cifar10" / "cifar10-jpg.tar.xz"
    colours = jpeg_tree(archive, {"train": 2, "test": 1})
    source = replace(CIFAR10, jpeg_sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
                     counts={"train": 20, "test": 10})
    before = snapshot(mirror)
    (tx, ty), (sx, sy) = load_cifar10(source, download_ok=False)
    assert tx.shape == (20, 3, 32, 32) and sx.shape == (10, 3, 32, 32) and tx.dtype == np.uint8
    assert np.array_equal(np.bincount(ty), [2] * 10) and np.array_equal(np.bincount(sy), [1] * 10)
    assert not np.array_equal(ty, np.sort(ty)), "the class-grouped copy is shuffled"
    expected = {(label, colour) for label, colour in colours["train"]}
    for image, label in zip(tx, ty):
        colour = tuple(int(round(c)) for c in image.reshape(3, -1).mean(axis=1))
        assert any(lab == label and np.allclose(colour, col, atol=3) for lab, col in expected), (label, colour)
    assert snapshot(mirror) == before
    archive.unlink()
    (tx2, ty2), _ = load_cifar10(source, download_ok=False)  # decoded once: the cache alone suffices
    assert np.array_equal(tx2, tx) and np.array_equal(ty2, ty)


def test_damaged_jpeg_copy_is_refused_and_nothing_is_cached(places):
    mirror, cache = places
    (mirror / "cifar10").mkdir()
    archive = mirror / "cifar10" / "cifar10-jpg.tar.xz"
    jpeg_tree(archive, {"train": 1, "test": 1})
    good_sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    archive.write_bytes(archive.read_bytes()[:-2000])
    source = replace(CIFAR10, jpeg_sha256=good_sha, counts={"train": 10, "test": 10})
    with pytest.raises(DataFileError, match=r"cifar10-jpg\.tar\.xz: sha256"):
        load_cifar10(source, download_ok=False)
    truncated_sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(DataFileError, match=r"cifar10-jpg\.tar\.xz: cannot be decoded"):
        load_cifar10(replace(source, jpeg_sha256=truncated_sha), download_ok=False)
    assert not any(cache.rglob("data_batch_1")), "no decoded batch from a damaged copy"


def test_incomplete_jpeg_copy_and_damaged_decoded_cache(places):
    mirror, cache = places
    (mirror / "cifar10").mkdir()
    archive = mirror / "cifar10" / "cifar10-jpg.tar.xz"
    jpeg_tree(archive, {"train": 1, "test": 1})
    source = replace(CIFAR10, jpeg_sha256=hashlib.sha256(archive.read_bytes()).hexdigest(), counts={"train": 11, "test": 10})
    with pytest.raises(DataFileError, match="10 train images, expected 11"):
        load_cifar10(source, download_ok=False)
    source = replace(source, counts={"train": 10, "test": 10})
    load_cifar10(source, download_ok=False)
    batch = next(cache.rglob("test_batch"))
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataFileError, match="test_batch.*to decode the JPEG copy again"):
        load_cifar10(source, download_ok=False)


def test_check_member_on_entries_of_a_real_archive(tmp_path):
    archive = tmp_path / "t.tar"
    with tarfile.open(archive, "w") as tar:
        for name, kind in (("ok/file", tarfile.REGTYPE), ("ok/dir", tarfile.DIRTYPE), ("ok/sym", tarfile.SYMTYPE),
                           ("ok/hard", tarfile.LNKTYPE), ("../up", tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "ok/file" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tar.addfile(info, io.BytesIO(b""))
    with tarfile.open(archive) as tar:
        verdicts = {}
        for member in tar.getmembers():
            try:
                check_member(member)
                verdicts[member.name] = "ok"
            except DataFileError:
                verdicts[member.name] = "refused"
    assert verdicts == {"ok/file": "ok", "ok/dir": "ok", "ok/sym": "refused", "ok/hard": "refused", "../up": "refused"}


def test_real_cifar10_when_available():
    """On machines with the shared copy (or the real archive), the full data set loads with the expected counts."""
    if not any((m / CIFAR10.jpeg_copy).exists() or (m / CIFAR10.archive.name).exists() for m in data_mirrors()):
        pytest.skip("no CIFAR-10 copy in the mirrors")
    (tx, ty), (sx, sy) = load_cifar10(download_ok=False, progress=False)
    assert tx.shape == (50000, 3, 32, 32) and sx.shape == (10000, 3, 32, 32)
    assert np.all(np.bincount(ty) == 5000) and np.all(np.bincount(sy) == 1000)
    mean = tx[:5000].mean(axis=(0, 2, 3)) / 255
    assert np.allclose(mean, [0.4914, 0.4822, 0.4465], atol=0.01)


def test_decoding_the_jpeg_copy_shows_progress(places, monkeypatch):
    import tinytorch.data as data
    mirror, cache = places
    (mirror / "cifar10").mkdir()
    archive = mirror / "cifar10" / "cifar10-jpg.tar.xz"
    jpeg_tree(archive, {"train": 2, "test": 1})
    source = replace(CIFAR10, jpeg_sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
                     counts={"train": 20, "test": 10})
    bars = []

    def recording_bar(iterable, **options):
        bars.append(options)
        return iterable
    monkeypatch.setattr(data, "tqdm", recording_bar)
    load_cifar10(source, download_ok=False)
    assert [bar["total"] for bar in bars] == [30], "one progress bar over the 30 images of the copy"
