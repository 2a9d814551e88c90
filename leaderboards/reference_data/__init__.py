"""Shipped reference data (``reference_scores.jsonl.gz``); see docs/leaderboards.md for its format."""
