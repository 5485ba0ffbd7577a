"""NIR, both ways: export snnexit's SNNs, import any library's (and run them with an exit).

    export.py     our SNN -> NIR graph (variants ``exact``, ``hard_reset``, ``subtract``)
    variants.py   the variants other readers run as written, and the threshold scale they need
    importer.py   NIR graph -> SpikingNetwork, as one reader means it (``import_nir``)
    semantics.py  what a neuron node means to each reader: the registry (nir, snnexit)
    libraries.py  ... as snnTorch, Sinabs, Norse and SpikingJelly read it
    layers.py     the stateless nodes (one meaning for every reader)
    graph.py      running a graph one step per call, recurrent edges included
    readers.py    running a graph in another library's own importer (tests, benchmarks)

Imports run one way: ``readers``/``variants`` -> ``importer`` -> ``export``.
"""

from snnexit.nir import libraries as _libraries  # registers the library semantics
from snnexit.nir.export import export_nir, fold_all_batchnorm, read_nir, to_nir
from snnexit.nir.importer import import_nir
from snnexit.nir.semantics import SEMANTICS, Semantics, create_semantics

__all__ = ["SEMANTICS", "Semantics", "create_semantics", "export_nir", "fold_all_batchnorm", "import_nir",
           "read_nir", "to_nir"]
del _libraries
