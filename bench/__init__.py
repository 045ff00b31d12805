"""Benchmarks (not tests): `make bench` runs them, prints tables, writes bench/results/*.json."""
