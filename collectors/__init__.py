"""l2lab collectors (see the issues for what lands here)."""
