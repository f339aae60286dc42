"""Benchmarks and the fault soak: `python -m benchmarks` (figures), `python -m benchmarks.soak` (soak)."""
