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


class TrainingError(OrganfedError):
    """Training cannot start or continue (no trainable parameters, a loss that is not finite, ...)."""


class CheckpointError(TrainingError):
    """A training checkpoint is missing, damaged, or belongs to a different run."""


class TrainingInterrupted(TrainingError):
    """Training stopped on request (Ctrl-C) after saving a checkpoint it can resume from."""

    exit_code = 130


class IdentityError(OrganfedError):
    """A key directory, identity file or trust directory is missing, malformed, unsafe or locked."""


class EnvelopeError(OrganfedError):
    """An envelope cannot be sealed (bad binding values, unreadable organ, output problems)."""


class VerificationError(OrganfedError):
    """An envelope was refused. One opaque type for every refusal; ``reason`` is machine-readable.

    Reasons: ``corrupt``, ``unsupported-version``, ``truncated``, ``trailing-data``,
    ``wrong-recipient``, ``unknown-sender``, ``revoked-sender``, ``wrong-sender``,
    ``wrong-run``, ``wrong-round``, ``expired``, ``bad-expiry``, ``replayed-nonce``,
    ``bad-signature``, ``binding-mismatch``, ``digest-mismatch``, ``organ-content``, ``policy``.
    """

    exit_code = 3

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"envelope refused ({reason}){': ' + detail if detail else ''}")


class PolicyError(VerificationError):
    """An organ is well formed but outside the coordinator's policy (spec, base, norm)."""

    def __init__(self, detail: str) -> None:
        super().__init__("policy", detail)


class ReplayCacheError(OrganfedError):
    """The replay cache cannot be read or written safely (so no envelope can be accepted)."""


class AuditLogError(OrganfedError):
    """The audit log cannot be appended to, or its hash chain does not verify."""
