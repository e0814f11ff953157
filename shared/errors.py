"""One error hierarchy for organfed.

Every error raised on purpose derives from :class:`OrganfedError`; the CLI turns
any of them into a one-line message and a non-zero exit code.
"""

from __future__ import annotations


class OrganfedError(Exception):
    """Base class of every error organfed raises on purpose."""

    exit_code = 1


class ConfigError(OrganfedError):
    """A configuration value or command-line argument is invalid."""


class UnsupportedFamilyError(OrganfedError):
    """The model's architecture is not one of the supported families."""


class ModelDirError(OrganfedError):
    """A model directory is missing, incomplete or not in safetensors format."""


class OrganFormatError(OrganfedError):
    """A file is not a well-formed organ (not safetensors, bad header, bad manifest)."""


class OrganContentError(OrganFormatError):
    """An organ's tensors do not match its manifest (missing, extra, shape, dtype, non-finite, digest)."""


class IncompatibleOrganError(OrganfedError):
    """An organ does not fit a recipient (an architecture number differs, ranges overlap)."""


class DataError(OrganfedError):
    """Training or evaluation text is missing, empty, binary, not UTF-8 or too small."""
