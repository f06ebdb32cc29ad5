"""Secateur benchmark suite: `make bench` runs run_all.py and writes docs/benchmarks.md."""
