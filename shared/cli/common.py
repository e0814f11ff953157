"""Argument types shared by command modules (argparse reports their errors as usage errors)."""

from __future__ import annotations

import argparse

from organfed.shared.errors import ConfigError
from organfed.shared.organ import LayerRange


def layer_range(text: str) -> LayerRange:
    """``S:E`` as a :class:`LayerRange`."""
    try:
        return LayerRange.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
