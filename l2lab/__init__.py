"""l2lab: research kit for crypto market microstructure.

This package is thin on purpose: the command line (`l2lab.cli`) and the settings (`l2lab.settings`) that tie
the collectors, kernels, feature store and research notebooks together.
"""

__version__ = "0.1.0"
