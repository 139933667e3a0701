"""Shared test settings. Fixtures specific to one area live in that area's test files."""

import os

# Loopback Ray clusters in tests: with a token in ~/.ray/auth_token a second `ray start --address` fails
# unless both sides agree (stack-notes); tests make their own clusters, so auth is off for them.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Figures are written to files; never try to open a window.
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep Ray from phoning home or printing its usage-stats banner in every test.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
