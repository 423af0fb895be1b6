"""Outputs: hear-eval-kit's results JSON and the leaderboard."""
