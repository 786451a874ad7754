"""l2lab's Feast definitions, generated from the kernels' catalog (``l2lab.featurestore.definitions``).

Builds objects only. Sources point at the data root: ``$L2LAB_DATA``, else ``../data`` beside this folder.
"""

from pathlib import Path

from l2lab.featurestore import definitions, paths

globals().update(definitions.build(paths.data_root_for(Path(__file__).parent)).module_globals())
