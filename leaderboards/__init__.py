"""Reference MTEB results with provenance, coverage-honest aggregation, reports and regression gates.

Public entry points live in ``leaderboards.commands`` (``report``, ``gate``); bad input raises
``leaderboards.errors.LeaderboardInputError``. This package never imports ``harness``.
"""
