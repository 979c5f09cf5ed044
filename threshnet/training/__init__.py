"""Training ThreshNets: decoded-image data, device batches, training loops, the search
proxy and the full-training CLI (``python -m threshnet.train``).

Built on the model library (:mod:`threshnet`), which imports nothing from here.
"""

from threshnet.training.data import DataError, ImageSet, load_split
from threshnet.training.loops import TrainSettings
from threshnet.training.proxy import ProxyResult, run_proxy

__all__ = ["DataError", "ImageSet", "ProxyResult", "TrainSettings", "load_split", "run_proxy"]
