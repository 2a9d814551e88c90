"""Test doubles shipped with the package so tests and benchmarks share them; not used in production."""
