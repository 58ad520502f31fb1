"""Benchmarks: `python3 build.py bench` runs them all side by side and writes docs/BENCHMARKS.md."""
