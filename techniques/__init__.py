"""Energy-saving training techniques as pure PyTorch hooks (no Ray here).

See ``techniques.base`` for the hook protocol every technique follows.
"""

from .base import LayerDensity, Run, Stack, Technique, declared_reports
from .registry import available, create, parameter_names, register, technique_class
from .space import Choice, Fixed, Float, Int

__all__ = [
    "Choice",
    "Fixed",
    "Float",
    "Int",
    "LayerDensity",
    "Run",
    "Stack",
    "Technique",
    "available",
    "declared_reports",
    "create",
    "parameter_names",
    "register",
    "technique_class",
]
