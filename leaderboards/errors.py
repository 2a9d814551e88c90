"""The one error type for bad leaderboard input.

A report or a gate that fails in CI is read by someone who did not write the run; every message
therefore names the file, the field (or line) and the fix. The CLI maps this error to exit code 2,
which the gate keeps distinct from 1 ("a score regressed") so that a typo never looks like a
regression and a regression never looks like a typo.
"""

from __future__ import annotations

from inputio import InputProblem


class LeaderboardInputError(InputProblem):
    """Input that cannot be used as given: a results folder, a result file, a baseline name, an option."""
