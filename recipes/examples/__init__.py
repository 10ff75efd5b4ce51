"""Bundled reference examples: the digits CNN, its data loader and example recipes."""
