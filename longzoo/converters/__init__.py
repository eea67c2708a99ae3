"""Conversion of short encoders into long models: transformers' Longformer, or their own architecture.

One generic converter (:func:`convert`) driven by one declarative :class:`Adapter`
per ``model_type`` (:data:`ADAPTERS`).
"""

from longzoo.converters.adapters import ADAPTERS, Adapter, get_adapter
from longzoo.converters.generic import ConversionResult, convert

__all__ = ["ADAPTERS", "Adapter", "ConversionResult", "convert", "get_adapter"]
