"""Kapı's benchmark and load-test harness (docs/explanation/benchmarks.md)."""
