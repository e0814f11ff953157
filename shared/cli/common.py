"""Argument types shared by command modules (argparse reports their errors as usage errors)."""

from __future__ import annotations

import argparse

from typing import TYPE_CHECKING

from organfed.shared.errors import ConfigError

if TYPE_CHECKING:
    from organfed.shared.organ import LayerRange


def layer_range(text: str) -> LayerRange:
    """``S:E`` as a :class:`LayerRange`."""
    from organfed.shared.organ import LayerRange  # here, so that commands without layers need not import torch

    try:
        return LayerRange.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
    return value
