"""CLI commands whose logic lives in the libraries: report and gate (leaderboards), generate (generators).

Kept apart from :mod:`harness.cli` so the evaluation commands load no library they do not need.
"""

from __future__ import annotations
