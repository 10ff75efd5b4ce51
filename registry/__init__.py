"""compressgate's hub: catalog, executor, Python API and CLI, plus the shared kernel.

Kept import-light on purpose: `compressgate --help` must not pay for torch or pydantic.
"""
