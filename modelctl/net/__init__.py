"""The network layer: the Hub's metadata, HTTP connections and TLS, the download engine.

Imports modelctl.core and modelctl.store (docs/architecture.md).
"""
