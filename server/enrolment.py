"""Keys for a federation kept on one machine (the demo and the tests).

In a real deployment each party runs ``organfed keys new`` on its own machine
and the public identity files are exchanged and enrolled; here one function
does all of it in one folder, with the same key and trust directories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from organfed.shared.identity import TrustStore, create_key_dir


@dataclass(frozen=True)
class PartyKeys:
    key_dir: Path
    trust_dir: Path


@dataclass(frozen=True)
class FederationKeys:
    coordinator: PartyKeys
    sites: dict[str, PartyKeys]


def make_federation_keys(root: Path, site_names: Sequence[str]) -> FederationKeys:
    """A coordinator and one identity per site, each enrolled in the other side's trust directory."""
    coordinator = PartyKeys(root / "coordinator" / "keys", root / "coordinator" / "trust")
    co_key = create_key_dir(coordinator.key_dir, "coordinator")
    sites = {}
    for name in site_names:
        party = PartyKeys(root / "sites" / name / "keys", root / "sites" / name / "trust")
        site_key = create_key_dir(party.key_dir, name)
        TrustStore(coordinator.trust_dir).enrol(site_key.identity)
        TrustStore(party.trust_dir).enrol(co_key.identity)
        sites[name] = party
    return FederationKeys(coordinator, sites)
