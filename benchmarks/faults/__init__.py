"""Fault drills: hostile files, killed batches, full disks, out-of-memory (issue 7)."""
