"""Metric computation and statistics over arrays, and the runners that produce them."""
