"""Benchmarks for scorax: run them with `python -m benchmarks [names...] [--quick]`."""
