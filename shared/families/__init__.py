"""Model-family adapters, one per file, behind :class:`FamilyAdapter`."""

from organfed.shared.families import gpt2, gpt_oss, llama  # noqa: F401  (registers the adapters)
from organfed.shared.families.base import (
    FamilyAdapter,
    adapter_by_name,
    adapter_for_model_type,
    supported_model_types,
)

__all__ = ["FamilyAdapter", "adapter_by_name", "adapter_for_model_type", "supported_model_types"]
