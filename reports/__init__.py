"""Audit reports rendered from catalog records."""
