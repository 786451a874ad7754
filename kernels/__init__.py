"""l2lab kernels (see the issues for what lands here)."""
