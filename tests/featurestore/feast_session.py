"""The simulated session every feature-store test shares (see conftest.py)."""

START = 1_767_574_800_000_000_000 - 90 * 10**9  # 2026-01-05T00:58:30Z: the session crosses into hour 01
SECONDS = 150.0
