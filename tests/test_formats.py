"""Structural checks against files written by the official safetensors and gguf packages."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.quants import quantize
from safetensors.numpy import save_file

from modelctl.core.formats import check_file
from tests.hubserver import gguf_bytes, safetensors_bytes


@pytest.fixture
def st_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "embed": np.arange(48, dtype=np.float32).reshape(6, 8),
            "mask": np.ones((5,), dtype=np.bool_),
            "ids": np.arange(3, dtype=np.int64),
            "half": np.zeros((2, 3), dtype=np.float16),
            "empty": np.zeros((0, 4), dtype=np.float32),
        },
        str(path),
        metadata={"format": "np"},
    )
    return path


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_custom_alignment(64)
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    writer.add_tensor("f32", np.random.default_rng(0).random((32, 64), dtype=np.float32))
    q8 = quantize(np.random.default_rng(1).random((8, 256), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_official_files_pass(st_file: Path, gguf_file: Path, tmp_path: Path) -> None:
    assert check_file(st_file) is None
    assert check_file(gguf_file) is None
    ours = tmp_path / "ours.safetensors"
    ours.write_bytes(safetensors_bytes({"a": ("BF16", [3, 5]), "b": ("U8", [7])}))
    assert check_file(ours) is None
    ours_gguf = tmp_path / "ours.gguf"
    ours_gguf.write_bytes(gguf_bytes({"t": [4, 4]}))
    assert check_file(ours_gguf) is None
    assert gguf.GGUFReader(str(ours_gguf)).tensors[0].name == "t"  # the official reader agrees
    assert check_file(tmp_path / "x.bin") is None  # no known format: nothing to say


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_truncated_safetensors(st_file: Path) -> None:
    size = st_file.stat().st_size
    _truncate(st_file, size - 4)
    assert "tensor data ends at" in (check_file(st_file) or "") or "outside the" in (
        check_file(st_file) or ""
    )


def test_safetensors_header_length_past_the_end(st_file: Path) -> None:
    data = bytearray(st_file.read_bytes())
    data[:8] = struct.pack("<Q", len(data) * 2)
    st_file.write_bytes(bytes(data))
    assert "does not fit" in (check_file(st_file) or "")


def test_safetensors_header_garbage_and_overlaps(st_file: Path, tmp_path: Path) -> None:
    data = bytearray(st_file.read_bytes())
    data[9] = 0xFF  # inside the JSON header
    st_file.write_bytes(bytes(data))
    assert "header is not valid JSON" in (check_file(st_file) or "")
    raw = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}'
    raw += b" " * (-len(raw) % 8)
    overlap = tmp_path / "overlap.safetensors"
    overlap.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(12))
    assert "overlaps" in (check_file(overlap) or "")
    raw = b'{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}'
    raw += b" " * (-len(raw) % 8)
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    assert "needs 12 bytes but spans 8" in (check_file(wrong) or "")


def test_gguf_bad_magic(gguf_file: Path) -> None:
    data = bytearray(gguf_file.read_bytes())
    data[:4] = b"GGML"
    gguf_file.write_bytes(bytes(data))
    assert check_file(gguf_file) == "bad magic b'GGML' (expected b'GGUF')"


def test_gguf_truncated_inside_tensor_data(gguf_file: Path) -> None:
    _truncate(gguf_file, gguf_file.stat().st_size - 100)
    problem = check_file(gguf_file) or ""
    assert "tensor 'q8' ends at byte" in problem and "truncated" in problem


def test_gguf_truncated_inside_the_header(gguf_file: Path) -> None:
    _truncate(gguf_file, 60)
    assert "past the end" in (check_file(gguf_file) or "")


def test_json(tmp_path: Path) -> None:
    empty = tmp_path / "config.json"
    empty.write_bytes(b"")
    assert check_file(empty) == "empty JSON document"
    bad = tmp_path / "tokenizer.json"
    bad.write_bytes(b'{"vocab": {"a": 1,}')
    assert (check_file(bad) or "").startswith("invalid JSON at line 1")
    good = tmp_path / "ok.json"
    good.write_bytes(b'{"a": [1, 2]}')
    assert check_file(good) is None
