"""Benchmarks behind `make bench` (see bench/README.md)."""
