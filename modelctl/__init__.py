"""modelctl: manage model files from the Hugging Face Hub for a project.

    from modelctl import ModelManager, ModelLoader, ensure_models

The API names are imported on first use (PEP 562), so `import modelctl` (and the CLI's start-up)
does not pay for the download and verification machinery.
"""

import logging
from typing import TYPE_CHECKING, Any

from modelctl.core import __version__
from modelctl.core.errors import (
    BadChecksumError,
    ConfigurationError,
    DownloadError,
    MissingModelError,
    ModelctlError,
    ModelManagerError,
    NotEnoughSpaceError,
)

# A library does not print: without this, logging's last-resort handler writes our warnings to
# stderr. An application that configures logging still gets them (the logger propagates).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {
    "ModelManager": "modelctl.api",
    "ensure_models": "modelctl.api",
    "is_cached": "modelctl.api",
    "get_model_path": "modelctl.api",
    "download_model": "modelctl.api",
    "verify_model": "modelctl.api",
    "validate_model_path": "modelctl.api",
    "ensure_model_available": "modelctl.api",
    "ModelSpec": "modelctl.core.registry",
    "ModelsConfig": "modelctl.core.registry",
    "ModelLoader": "modelctl.loader",
    "ModelConfig": "modelctl.loader",
    "ModelLoadError": "modelctl.loader",
    "CORRUPTION_PATTERNS": "modelctl.loader",
    "robust_model_download": "modelctl.pretrained",
    "load_model_and_tokenizer": "modelctl.pretrained",
    "is_model_cached": "modelctl.pretrained",
    "ModelDownloadError": "modelctl.pretrained",
}

if TYPE_CHECKING:
    from modelctl.api import (
        ModelManager,
        download_model,
        ensure_model_available,
        ensure_models,
        get_model_path,
        is_cached,
        validate_model_path,
        verify_model,
    )
    from modelctl.core.registry import ModelsConfig, ModelSpec
    from modelctl.loader import CORRUPTION_PATTERNS, ModelConfig, ModelLoader, ModelLoadError
    from modelctl.pretrained import (
        ModelDownloadError,
        is_model_cached,
        load_model_and_tokenizer,
        robust_model_download,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modelctl' has no attribute {name!r}")


__all__ = [
    "CORRUPTION_PATTERNS",
    "BadChecksumError",
    "ConfigurationError",
    "DownloadError",
    "MissingModelError",
    "ModelConfig",
    "ModelDownloadError",
    "ModelLoadError",
    "ModelLoader",
    "ModelManager",
    "ModelManagerError",
    "ModelSpec",
    "ModelctlError",
    "ModelsConfig",
    "NotEnoughSpaceError",
    "__version__",
    "download_model",
    "ensure_model_available",
    "ensure_models",
    "get_model_path",
    "is_cached",
    "is_model_cached",
    "load_model_and_tokenizer",
    "robust_model_download",
    "validate_model_path",
    "verify_model",
]
