"""Decompression bombs and forged sizes: ``load`` allocates no more than the file holds.

Each file below is a *valid* checkpoint as far as its checksum goes (recomputed, which anyone
can do) whose zip or ``.npy`` bookkeeping asks for far more memory than the file's bytes: a
compressed member (DEFLATE, bzip2, LZMA) that inflates 1000-fold, a stored member whose ``.npy``
header declares a shape its bytes do not hold, a central directory that declares more bytes than
the file has, and an oversized JSON header. Every one is refused with ``CheckpointError`` before
anything of that size is allocated: the peak traced allocation of ``load`` stays a few MiB while
the files ask for 256 MiB. A legitimate checkpoint loads with a peak of about twice its arrays
(the arrays read, then the model built from them) plus one layer's initializer temporaries.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import checkpoint as ckpt
from arrayprop.checkpoint.format import MAX_HEADER_BYTES
from arrayprop.errors import CheckpointError

#: What each bomb asks for: 256 MiB of float64 zeros.
BOMB_ITEMS = 2**25
BOMB_BYTES = BOMB_ITEMS * 8
#: What a refused bomb may cost: the small checkpoint around it, parsing, bookkeeping.
REFUSED_PEAK = 4 * 2**20


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _small(tmp_path):
    """The header and arrays of a small real checkpoint."""
    path = tmp_path / "small.npz"
    model = ap.mlp([3, 4, 2], seed=0, backend="numpy")
    ckpt.save(model, path, optimizer=ap.Adam(model.parameters()), extra={"big": np.zeros(2)})
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(arrays.pop("header").tobytes()), arrays


def _bomb(tmp_path, *, method=zipfile.ZIP_DEFLATED, items=BOMB_ITEMS, data_items=None):
    """A checkpoint whose extra array ``big`` is ``items`` float64 zeros, stored with ``method``;
    with ``data_items``, the member holds only that many zeros after a header declaring
    ``items`` (a forged shape). The checksum covers the declared array, so it is valid."""
    header, arrays = _small(tmp_path)
    del arrays["extra.big"]
    h = hashlib.sha256(_canonical({k: v for k, v in header.items() if k != "checksum"}))
    zero_chunk = bytes(2**20)
    names = sorted([*arrays, "extra.big"])
    for name in names:
        if name == "extra.big":
            h.update(_canonical([name, "<f8", [items]]))
            left = items * 8
            while left:
                n = min(left, len(zero_chunk))
                h.update(zero_chunk[:n])
                left -= n
        else:
            a = arrays[name]
            h.update(_canonical([name, a.dtype.str, list(a.shape)]))
            h.update(a.tobytes())
    header["checksum"] = "sha256:" + h.hexdigest()
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            zf.writestr(name + ".npy", _npy(arr))
        zf.writestr("header.npy", _npy(np.frombuffer(_canonical(header), dtype=np.uint8)))
        info = zipfile.ZipInfo("extra.big.npy")
        info.compress_type = method
        with zf.open(info, "w", force_zip64=True) as f:
            f.write(_npy_header(np.dtype("<f8"), (items,)))
            left = (items if data_items is None else data_items) * 8
            while left:
                n = min(left, len(zero_chunk))
                f.write(zero_chunk[:n])
                left -= n
    return path


def _forged_directory(tmp_path):
    """A stored member whose central-directory entry (and .npy header) declare 256 MiB that
    the file does not hold."""
    path = _bomb(tmp_path, method=zipfile.ZIP_STORED, data_items=16)
    raw = bytearray(path.read_bytes())
    declared = BOMB_BYTES + len(_npy_header(np.dtype("<f8"), (BOMB_ITEMS,)))
    at = 0
    while True:  # the member's central-directory record: signature, 42 bytes, its name
        at = raw.index(b"PK\x01\x02", at + 1)
        if raw[at + 46 : at + 46 + len(b"extra.big.npy")] == b"extra.big.npy":
            break
    struct.pack_into("<II", raw, at + 20, declared, declared)  # compressed, uncompressed size
    path.write_bytes(bytes(raw))
    return path


def _huge_header(tmp_path):
    header, arrays = _small(tmp_path)
    header["extra"]["padding"] = [0] * (MAX_HEADER_BYTES // 2 + 1)  # 2 bytes each: "0,"
    header["checksum"] = "sha256:" + "0" * 64  # refused before the checksum matters
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            zf.writestr(name + ".npy", _npy(arr))
        zf.writestr("header.npy", _npy(np.frombuffer(_canonical(header), dtype=np.uint8)))
    return path


BOMBS = {
    "deflate-1000x": (lambda tmp: _bomb(tmp), r"member 'extra.big.npy' is compressed"),
    "bzip2": (
        lambda tmp: _bomb(tmp, method=zipfile.ZIP_BZIP2, items=2**20),
        r"member 'extra.big.npy' is compressed",
    ),
    "lzma": (
        lambda tmp: _bomb(tmp, method=zipfile.ZIP_LZMA, items=2**20),
        r"member 'extra.big.npy' is compressed",
    ),
    "npy-shape-larger-than-member": (
        lambda tmp: _bomb(tmp, method=zipfile.ZIP_STORED, data_items=16),
        r"member 'extra.big.npy' declares an array of shape \(33554432,\) and dtype float64 "
        r"\(268435456 bytes\) but holds 128 bytes",
    ),
    "directory-larger-than-file": (
        _forged_directory,
        r"members declare \d+ bytes in all, more than the file's \d+ bytes",
    ),
    "header-too-large": (_huge_header, r"member 'header.npy' has \d+ bytes, more than the"),
}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_a_bomb_is_refused_before_its_memory_is_allocated(tmp_path, kind):
    build, match = BOMBS[kind]
    path = build(tmp_path)
    assert path.stat().st_size < 2**20 or kind == "header-too-large"
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as info:
            ckpt.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < REFUSED_PEAK, f"load allocated {peak / 2**20:.1f} MiB on the way"
    assert re.search(match, str(info.value)), str(info.value)


def test_the_deflate_bomb_is_a_valid_archive(tmp_path):
    """The bomb is no broken file: zipfile and NumPy read it whole (a small one, here)."""
    path = _bomb(tmp_path, items=2**16)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
    with np.load(path) as npz:
        assert npz["extra.big"].shape == (2**16,)
    with pytest.raises(CheckpointError, match="is compressed"):
        ckpt.load(path)


def test_a_real_checkpoint_loads_within_its_arrays_and_its_model(tmp_path):
    model = ap.mlp([512, 1024, 512, 10], seed=0, backend="numpy", dtype="float64")  # 8.1 MiB
    path = tmp_path / "real.npz"
    ckpt.save(model, path)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        loaded = ckpt.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The arrays read, the model built from them (the same size again), and the initializer's
    # temporaries while one layer is built (at most its weight once more).
    largest = max(p.data.nbytes for p in model.parameters())
    assert peak < 2 * size + largest + REFUSED_PEAK, (peak, size)
    for a, b in zip(loaded.model.parameters(), model.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_save_refuses_a_header_load_would_refuse(tmp_path):
    model = ap.mlp([3, 2], seed=0, backend="numpy")
    with pytest.raises(CheckpointError, match=r"header takes \d+ bytes of JSON, more than"):
        ckpt.save(model, tmp_path / "m.npz", extra={"big": list(range(MAX_HEADER_BYTES // 4))})
    assert not list(tmp_path.iterdir())
