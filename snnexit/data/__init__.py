"""Data sets: built-in ones and (later) loaders for local copies of real ones."""

from snnexit.data.builtin import DATASETS, default_frames, is_built_in, load_dataset
from snnexit.data import cifar, imagefolder  # noqa: F401  (registration: cifar10, cifar100, imagefolder)
from snnexit.data import events  # noqa: F401  (registration: event_mnist, nmnist, cifar10_dvs, dvs_gesture, ncaltech101)
from snnexit.data.splits import DataSplits, Split, make_splits, stratified_split

__all__ = ["DATASETS", "DataSplits", "Split", "default_frames", "is_built_in", "load_dataset", "make_splits", "stratified_split"]
