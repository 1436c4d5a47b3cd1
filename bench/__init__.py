"""Kapı's benchmark and load-test harness (see README, "Benchmarks")."""
