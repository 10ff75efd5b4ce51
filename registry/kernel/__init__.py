"""The kernel every package imports: the error tree, digests and canonical JSON, DSSE envelopes,
Ed25519 keys, atomic file writes and the plug-in registries.

It imports nothing else of compressgate's, and nothing heavier than `cryptography`.
"""
