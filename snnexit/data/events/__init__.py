"""Event-camera data: readers for the real file formats, binning into frames, and the
built-in ``event_mnist`` (MNIST-5k through a simulated event camera).

Every reader returns a numpy structured array with fields (x, y, t, p) (:data:`EVENT_DTYPE`);
:func:`to_frames` turns one into frames ``(T, 2, H, W)``.
"""

from snnexit.data.events.binning import frame_index_by_count, frame_index_by_time, to_frames
from snnexit.data.events.core import EVENT_DTYPE, check_events, make_events
from snnexit.data.events.event_mnist import (SaccadeCamera, build_event_mnist, event_mnist, simulate_events,
                                             simulate_frames)

__all__ = [
    "EVENT_DTYPE", "SaccadeCamera", "build_event_mnist", "check_events", "event_mnist", "frame_index_by_count",
    "frame_index_by_time", "make_events", "simulate_events", "simulate_frames", "to_frames",
]
