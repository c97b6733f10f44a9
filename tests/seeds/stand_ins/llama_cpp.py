"""A stand-in for llama-cpp-python's `Llama` (not installable here: it compiles llama.cpp).

It opens the file as llama.cpp does, through a GGUF reader (the `gguf` package's), and fails as
llama-cpp-python does: `ValueError: Failed to load model from file: <path>`. Only what seed 002's
loader functions touch is here.
"""

from __future__ import annotations

import os
from typing import Any


class Llama:
    def __init__(
        self, model_path: str, *, n_ctx: int = 512, n_threads: int | None = None, **kwargs: Any
    ) -> None:
        import gguf

        if not os.path.isfile(model_path):
            raise ValueError(f"Model path does not exist: {model_path}")
        try:
            reader = gguf.GGUFReader(model_path)
        except Exception as err:  # llama.cpp logs the reason and returns NULL; the binding says this
            raise ValueError(f"Failed to load model from file: {model_path}") from err
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.kwargs = kwargs
        self.tensors = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
