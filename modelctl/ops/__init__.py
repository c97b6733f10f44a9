"""The operations layer: one module per command's core (ensure, clean, doctor, add, lock, ...).

An ops module imports the layers below and never another ops module (docs/architecture.md).
"""
