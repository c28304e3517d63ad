"""Benchmarks and reliability drills (run from the repository root)."""
