"""The fetch layer: plans a model's files (keep, reuse, resume, download) and runs them.

Shared by every command that gets bytes (download, ensure, lock, add, outdated); imports the
layers below it only (docs/architecture.md).
"""
