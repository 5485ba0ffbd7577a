"""Event-camera data: readers for the real file formats, binning into frames, and the
built-in ``event_mnist`` (MNIST-5k through a simulated event camera).

Every reader returns a numpy structured array with fields (x, y, t, p) (:data:`EVENT_DTYPE`);
:func:`to_frames` turns one into frames ``(T, 2, H, W)``.
"""

from snnexit.data.events.aedat2 import CIFAR10_DVS_SIZE, parse_cifar10_dvs
from snnexit.data.events.aedat31 import (DVS_GESTURE_SIZE, parse_aedat31, parse_gesture_labels,
                                         segment_gestures)
from snnexit.data.events.binning import frame_index_by_count, frame_index_by_time, to_frames
from snnexit.data.events.core import EVENT_DTYPE, check_events, make_events
from snnexit.data.events.simulator import (SaccadeCamera, build_event_mnist, event_mnist, simulate_events,
                                             simulate_frames)
from snnexit.data.events.folders import (CIFAR10_DVS_CLASSES, cifar10_dvs, dvs_gesture, list_cifar10_dvs,
                                         list_dvs_gesture, list_ncaltech101, ncaltech101, nmnist)
from snnexit.data.events.layouts import find_layout
from snnexit.data.events.ncaltech101 import NCALTECH101_SIZE, NMNIST_SIZE, parse_atis_bin, parse_ncaltech101, parse_nmnist

__all__ = [
    "CIFAR10_DVS_CLASSES", "CIFAR10_DVS_SIZE", "DVS_GESTURE_SIZE", "EVENT_DTYPE", "NCALTECH101_SIZE", "NMNIST_SIZE",
    "SaccadeCamera", "build_event_mnist", "check_events", "cifar10_dvs", "dvs_gesture", "event_mnist", "find_layout",
    "frame_index_by_count", "frame_index_by_time", "list_cifar10_dvs", "list_dvs_gesture", "list_ncaltech101",
    "make_events", "ncaltech101", "nmnist", "parse_aedat31", "parse_atis_bin", "parse_cifar10_dvs",
    "parse_gesture_labels", "parse_ncaltech101", "parse_nmnist", "segment_gestures", "simulate_events",
    "simulate_frames", "to_frames",
]
