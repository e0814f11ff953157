"""One federated round at a site: check the base, get the current organ, train, seal, reply.

Raw text and unsealed weights never leave this module: the reply holds the
organ sealed to the coordinator and counts and losses, nothing else.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from flwr.app import RecordDict

from organfed.client.node import NodeConfig
from organfed.client.train import TrainConfig, load_data, train_organ
from organfed.shared.errors import IncompatibleOrganError, VerificationError
from organfed.shared.fingerprint import fingerprint_model_dir
from organfed.shared.identity import KeyDir, TrustStore, load_key_dir, read_passphrase
from organfed.shared.model_dir import open_model_dir
from organfed.shared.organ import LayerRange, Organ, extract_organ, load_organ, save_organ
from organfed.shared.policy import OrganPolicy
from organfed.shared.protocol import INSTRUCTIONS, ORGAN, RoundInstructions, hello_reply, record_bytes, train_reply
from organfed.shared.replay import ReplayCache
from organfed.shared.sealing import open_envelope, seal_organ


def site_key(node: NodeConfig) -> KeyDir:
    passphrase = read_passphrase(file=node.passphrase_file) if node.passphrase_file else None
    return load_key_dir(node.key_dir, passphrase=passphrase)


def hello(node: NodeConfig) -> RecordDict:
    """Tell the coordinator which site key this node holds (public information)."""
    return hello_reply(site_key(node).identity.key_id, node.site_name)


def current_organ(content: RecordDict, ins: RoundInstructions, node: NodeConfig, key: KeyDir, trust: TrustStore,
                  scratch: Path) -> Organ:
    """The organ to continue from: the coordinator's, opened and verified, or the base's own layers."""
    md = open_model_dir(node.model_dir)
    if ORGAN not in content:
        extract_organ(md.path, scratch / "start.safetensors", LayerRange.parse(ins.layers) if ins.layers else None)
        return load_organ(scratch / "start.safetensors")
    layers = LayerRange.parse(ins.layers) if ins.layers else LayerRange.paper_default(md.num_layers)
    opened = open_envelope(
        record_bytes(content[ORGAN]), key=key, trust=trust, run_id=ins.run_id, round=ins.round,
        replay=ReplayCache(node.state_dir / "replay.json"), out=scratch / "current.safetensors",
        policy=OrganPolicy(family=md.adapter.name, layers=(layers.start, layers.end), base_fingerprint=ins.base_fingerprint),
        expected_sender=ins.coordinator_key_id,
    )
    return load_organ(opened.path)


def train_round(content: RecordDict, node: NodeConfig) -> RecordDict:
    """Handle one ``train`` message; raise a typed error (sent back as an error reply) on any refusal."""
    key, trust = site_key(node), TrustStore(node.trust_dir)
    ins = RoundInstructions.from_record(content[INSTRUCTIONS], trust)
    local = fingerprint_model_dir(node.model_dir)
    if local != ins.base_fingerprint:
        raise IncompatibleOrganError(
            f"site {node.site_name}: the announced base {ins.base_fingerprint[:19]} is not this site's base {local[:19]}; refusing to train"
        )
    if node.coordinator_key_id and ins.coordinator_key_id != node.coordinator_key_id:
        raise VerificationError("wrong-sender", f"instructions name coordinator {ins.coordinator_key_id}, this site works for {node.coordinator_key_id}")
    coordinator = trust.lookup(ins.coordinator_key_id)
    config = TrainConfig(**ins.train, device=node.device)
    (node.state_dir / "blocks").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="round-", dir=node.state_dir) as tmp:
        scratch = Path(tmp)
        organ = current_organ(content, ins, node, key, trust, scratch)
        blocks = load_data(node.model_dir, node.data, config, cache_dir=node.state_dir / "blocks")
        result = train_organ(node.model_dir, blocks, config, organ=organ)
        save_organ(result.organ, scratch / "trained.safetensors")
        envelope = seal_organ(scratch / "trained.safetensors", sender=key, recipient=coordinator,
                              run_id=ins.run_id, round=ins.round, ttl=ins.ttl, nonce=ins.nonce)
    stats = result.stats
    metrics: dict[str, float | int] = {"tokens": stats.tokens, "steps": stats.steps, "train_loss": float(stats.train_loss),
                                       "seconds": float(stats.seconds)}
    if stats.val_loss is not None:
        metrics["val_loss"] = float(stats.val_loss)
    return train_reply(envelope, metrics)
