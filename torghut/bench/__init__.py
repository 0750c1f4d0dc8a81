"""Benchmarks: each prints its numbers and saves a plot under ``bench-results/``."""
