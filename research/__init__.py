"""l2lab research: the numbered notebooks (``research/notebooks/NN_*.py``, jupytext percent files) and the tested
library they call: ``sessions`` (the simulated research session), ``trainsets`` (training sets through the feature
store), ``eda``, ``stats`` (IC, Newey-West), ``cv`` (purged walk-forward), ``selection``, ``models`` (AutoGluon,
baselines, calibration, regime models), ``interpret`` (TreeSHAP, partial dependence), ``integrity`` (figures
against the planted truth), ``runlog`` (metrics and plots of a run), ``runner`` (``l2lab run``), ``demo``."""
