"""The store layer: storage roots and model folders on disk, their state, verification, reuse.

Imports only modelctl.core (docs/architecture.md).
"""
