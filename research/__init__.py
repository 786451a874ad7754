"""l2lab research (see the issues for what lands here)."""
