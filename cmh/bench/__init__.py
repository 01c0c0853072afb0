"""Benchmark targets for ``cmh bench`` (one module each)."""
