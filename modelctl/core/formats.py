"""Cheap structural checks of model files: safetensors and GGUF headers, JSON documents.

Hand-written because the official readers need more than a header: safetensors' `safe_open`
wants a tensor framework (numpy or torch) and gguf's GGUFReader memory-maps the file through
numpy. These checks read only the header (a few KB to a few MB) and compare every tensor's
extent with the file size, so a truncated or overwritten file is caught without hashing it.
The tests check them against files written by the official `safetensors` and `gguf` packages.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # safetensors refuses larger headers too
# Bits per element of each safetensors dtype.
SAFETENSORS_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip
# ggml tensor types: (elements per block, bytes per block), from gguf-py's GGML_QUANT_SIZES.
GGML_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}  # fmt: skip
# GGUF metadata value types with a fixed size in bytes (8: string and 9: array are variable).
GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGUF_MAX_COUNT = 1 << 24  # tensors, keys, array items, dimensions: anything above is a broken header


class FormatError(Exception):
    """The file's structure is broken; the message says where."""


def checker_for(path: str) -> Callable[[Path], None] | None:
    """The structural check for a file name, or None if it has no known format."""
    name = path.lower()
    if name.endswith(".safetensors"):
        return check_safetensors
    if name.endswith(".gguf"):
        return check_gguf
    if name.endswith(".json"):
        return check_json
    return None


def check_json(path: Path) -> None:
    data = path.read_bytes()
    if not data.strip():
        raise FormatError("empty JSON document")
    try:
        json.loads(data)
    except UnicodeDecodeError as err:
        raise FormatError(f"not UTF-8 text at byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise FormatError(f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None


def check_safetensors(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{size} bytes: too short for the 8-byte header length")
        (header_len,) = struct.unpack("<Q", head)
        if header_len < 2 or header_len > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise FormatError(f"header length {header_len} does not fit in a {size}-byte file")
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FormatError(f"header is not valid JSON: {err}") from None
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")
    data_len = size - 8 - header_len
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise FormatError("__metadata__ is not an object")
            continue
        spans.append((*_tensor_span(name, info, data_len), name))
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin < position:
            raise FormatError(
                f"tensor {name!r} overlaps the previous tensor (starts at {begin} < {position})"
            )
        if begin > position:
            raise FormatError(f"a hole of {begin - position} bytes before tensor {name!r}")
        position = end
    if position != data_len:
        raise FormatError(f"tensor data ends at {position} but the data section has {data_len} bytes")


def _tensor_span(name: str, info: object, data_len: int) -> tuple[int, int]:
    if not isinstance(info, dict):
        raise FormatError(f"tensor {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in SAFETENSORS_BITS:
        raise FormatError(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise FormatError(f"tensor {name!r} has a malformed shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise FormatError(f"tensor {name!r} has malformed data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise FormatError(
            f"tensor {name!r} spans bytes {begin}-{end}, outside the {data_len}-byte data section"
        )
    elements = 1
    for dim in shape:
        elements *= dim
    expected = elements * SAFETENSORS_BITS[dtype]
    if expected % 8 or end - begin != expected // 8:
        raise FormatError(
            f"tensor {name!r} ({dtype} {shape}) needs {expected / 8:g} bytes but spans {end - begin}"
        )
    return begin, end


class _Reader:
    """Sequential little-endian reads with bounds checks against the file size."""

    def __init__(self, f: object, size: int) -> None:
        self.f = f
        self.size = size
        self.pos = 0

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise FormatError(f"header runs past the end of the {self.size}-byte file (at byte {self.pos})")
        data = self.f.read(n)  # type: ignore[attr-defined]
        if len(data) != n:
            raise FormatError(f"short read at byte {self.pos}")
        self.pos += n
        return bytes(data)

    def u32(self) -> int:
        return int(struct.unpack("<I", self.read(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.read(8))[0])

    def count(self, what: str) -> int:
        n = self.u64()
        if n > GGUF_MAX_COUNT:
            raise FormatError(f"{what} count {n} is not sane")
        return n

    def string(self) -> str:
        n = self.u64()
        if n > self.size:
            raise FormatError(f"string length {n} at byte {self.pos - 8} is past the end of the file")
        return self.read(n).decode("utf-8", errors="replace")

    def skip_value(self, kind: int, depth: int = 0) -> object:
        if kind in GGUF_SCALARS:
            raw = self.read(GGUF_SCALARS[kind])
            return int.from_bytes(raw, "little") if kind in (4,) else None
        if kind == 8:
            return self.string()
        if kind == 9 and depth < 2:
            item_kind = self.u32()
            for _ in range(self.count("array item")):
                self.skip_value(item_kind, depth + 1)
            return None
        raise FormatError(f"unknown metadata value type {kind} at byte {self.pos - 4}")


def check_gguf(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as f:
        r = _Reader(f, size)
        if size < 24:
            raise FormatError(f"{size} bytes: too short for a GGUF header")
        magic = r.read(4)
        if magic != b"GGUF":
            raise FormatError(f"bad magic {magic!r} (expected b'GGUF')")
        version = r.u32()
        if version not in (2, 3):
            raise FormatError(f"unsupported GGUF version {version}")
        n_tensors = r.count("tensor")
        n_keys = r.count("metadata key")
        alignment = 32
        for _ in range(n_keys):
            key = r.string()
            value = r.skip_value(r.u32())
            if key == "general.alignment" and isinstance(value, int):
                alignment = value
        if alignment <= 0 or alignment & (alignment - 1):
            raise FormatError(f"general.alignment {alignment} is not a power of two")
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.u32()
            if n_dims > 8:
                raise FormatError(f"tensor {name!r} has {n_dims} dimensions")
            dims = [r.u64() for _ in range(n_dims)]
            kind = r.u32()
            offset = r.u64()
            tensors.append((name, dims, kind, offset))
        data_start = r.pos + (-r.pos % alignment)
    for name, dims, kind, offset in tensors:
        if offset % alignment:
            raise FormatError(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
        elements = 1
        for dim in dims:
            elements *= dim
        block = GGML_BLOCKS.get(kind)
        nbytes = 1 if block is None else -(-elements // block[0]) * block[1]  # unknown type: start only
        end = data_start + offset + nbytes
        if end > size:
            raise FormatError(
                f"tensor {name!r} ends at byte {end}, past the end of the {size}-byte file (truncated?)"
            )


def check_file(path: Path) -> str | None:
    """Run the check for path's format; return the problem, or None if fine or of no known format."""
    checker = checker_for(path.name)
    if checker is None:
        return None
    try:
        checker(path)
    except FormatError as err:
        return str(err)
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    return None
