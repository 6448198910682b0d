"""Tether's benchmark suite: `python -m bench.run` (see bench/README.md). Not part of the tests."""
