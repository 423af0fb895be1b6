"""Test-wide settings."""

import os

from hypothesis import settings

# CI must give the same verdict on every run of the same commit: there the
# property tests replay a fixed sequence of examples. Elsewhere they explore.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
