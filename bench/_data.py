"""Generated benchmark data shared by the bench scripts."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def write_random(path: Path, size: int) -> str:
    """Write `size` random bytes to path (8 MiB at a time); return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()
