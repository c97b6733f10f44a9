"""modelctl: manage model files from the Hugging Face Hub for a project."""

from modelctl.errors import (
    BadChecksumError,
    ConfigurationError,
    DownloadError,
    MissingModelError,
    ModelctlError,
    ModelManagerError,
    NotEnoughSpaceError,
)

__version__ = "0.1.0"

__all__ = [
    "BadChecksumError",
    "ConfigurationError",
    "DownloadError",
    "MissingModelError",
    "ModelManagerError",
    "ModelctlError",
    "NotEnoughSpaceError",
    "__version__",
]
