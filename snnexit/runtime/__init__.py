"""The deployed early exit: engines that simulate an SNN and stop each input when its policy says so.

``EarlyExitEngine`` advances the network one step at a time and drops finished inputs from the
batch; ``ChunkedEngine`` runs several steps per layer call where the policy lets it, with a thread
count chosen for the batch and the machine's load. Both take exactly the decisions the policy
takes offline on a trace.
"""

from snnexit.runtime.chunked import ChunkedEngine
from snnexit.runtime.engine import EarlyExitEngine, ExitResult

__all__ = ["ChunkedEngine", "EarlyExitEngine", "ExitResult"]
