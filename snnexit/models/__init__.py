"""Model families behind one registry; import a family module to register it."""

from snnexit.models import resnet, vgg  # noqa: F401  (registration)
from snnexit.models.registry import MODELS, create_model, parameter_count, register_model

__all__ = ["MODELS", "create_model", "parameter_count", "register_model"]
