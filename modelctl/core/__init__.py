"""The core layer: what a model is (registry, record, lock), options, errors, retries, digests.

Imports nothing else of modelctl; every layer above builds on it (docs/architecture.md).
"""

__version__ = "0.1.0"  # also in pyproject.toml; tests/test_layers.py holds the two equal
