"""Both Flower apps in one process: the real ServerApp and ClientApps, wired by an in-memory Grid.

The Grid here only delivers messages (as a SuperLink would); everything else
is the production code. The real-process federation is in test_federation_processes.py.
"""

from __future__ import annotations

import json
import traceback
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from organfed.client.app import app as client_app
from organfed.client.node import NodeConfig
from organfed.server.app import app as server_app
from organfed.server.config import ServerConfig
from organfed.server.enrolment import make_federation_keys
from organfed.server.store import OrganStore
from organfed.shared.audit_log import verify_log
from organfed.shared.model_dir import load_model
from organfed.shared.tiny import write_tiny_model

SITES = ("north", "south", "east")  # the enrolled sites of the small_federation fixture
Handler = Callable[[Message, Context], Message]


class LocalGrid(Grid):
    """Delivers each message to an in-process ClientApp, like a SuperLink with instant nodes."""

    def __init__(self, nodes: dict[int, tuple[Handler, Context]]) -> None:
        self.nodes = nodes
        self.replies: dict[str, Message] = {}
        self.log: list[tuple[int, str]] = []

    def set_run(self, run):  # pragma: no cover - not used by the apps
        self._run = run

    @property
    def run(self):  # pragma: no cover
        return self._run

    def create_message(self, *args, **kwargs):  # pragma: no cover - deprecated in Flower
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            handler, context = self.nodes[msg.metadata.dst_node_id]
            self.log.append((msg.metadata.dst_node_id, msg.metadata.message_type))
            try:
                reply = handler(msg, context)
            except Exception as exc:  # what Flower's runtime turns into an error reply
                traceback.print_exc()
                reply = Message(Error(code=2, reason=f"{type(exc)}:<{exc!r}>"), reply_to=msg)
            if reply is not None:
                self.replies[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self.replies.pop(i) for i in message_ids if i in self.replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(list(self.push_messages(list(messages))))


@pytest.fixture(scope="module")
def federation(small_federation, tmp_path_factory):
    fed, state = small_federation, tmp_path_factory.mktemp("inprocess-state")
    nodes = {site: NodeConfig(site, fed["base"], (fed["data"][site],), fed["keys"].sites[site].key_dir,
                              fed["keys"].sites[site].trust_dir, state / site, "cpu") for site in SITES}
    return {**fed, "nodes": nodes}


def run_config(fed, work: Path, **overrides) -> dict:
    config = {
        "run-id": "test-run", "work-dir": str(work), "base-model": str(fed["base"]),
        "key-dir": str(fed["keys"].coordinator.key_dir), "trust-dir": str(fed["keys"].coordinator.trust_dir),
        "num-rounds": 2, "min-sites": 2, "device": "cpu", "train-steps": 3, "train-batch-size": 2,
        "train-block-size": 32, "train-learning-rate": 0.01, "train-val-fraction": 0.2,
        "eval-data": f"north={fed['root'] / 'val.txt'}", "eval-max-tokens": 2000,
    }
    config.update(overrides)
    ServerConfig.from_run_config(config)  # fail early on a typo in a test
    return config


def make_grid(fed, handlers: dict[str, Handler] | None = None) -> LocalGrid:
    handlers = handlers or {}
    nodes = {}
    for i, (site, node) in enumerate(fed["nodes"].items(), start=101):
        context = Context(run_id=1, node_id=i, node_config=_node_config(node), state=RecordDict(), run_config={})
        nodes[i] = (handlers.get(site, client_app), context)
    return LocalGrid(nodes)


def _node_config(node: NodeConfig) -> dict:
    return {"site-name": node.site_name, "model-dir": str(node.model_dir), "data": ",".join(map(str, node.data)),
            "key-dir": str(node.key_dir), "trust-dir": str(node.trust_dir), "state-dir": str(node.state_dir), "device": node.device}


def run_server(grid: Grid, config: dict) -> None:
    """Run the ServerApp as Flower's serverapp process would (it sets the task identity first)."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    try:
        server_app(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config))
    finally:
        TaskIdentity._run_id = TaskIdentity._node_id = TaskIdentity._task_id = None


def test_two_rounds_three_sites(federation, tmp_path):
    grid = make_grid(federation)
    run_server(grid, run_config(federation, tmp_path))
    run_dir = tmp_path / "runs" / "test-run"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["rounds"] == 2 and len(report["history"]) == 2
    assert all(len(r["accepted"]) == 3 for r in report["history"])
    assert (run_dir / "report.md").is_file() and (run_dir / "perplexity_by_domain.png").is_file()
    state = OrganStore(tmp_path / "store").state("test-run")
    assert state.completed_rounds == 2 and state.current
    load_model(run_dir / "recipient")  # a standard HF directory
    audit = verify_log(tmp_path / "audit.log")
    assert audit.lines == 6
    assert sum(1 for _, kind in grid.log if kind == "train") == 6


# -- dishonest and broken sites -------------------------------------------------------------

def poisoned_site(node: NodeConfig, poison: str, other_base: Path | None = None) -> Handler:
    """A ClientApp of an enrolled site that sends a bad organ, properly sealed (or a tampered envelope)."""
    from organfed.client.round import site_key, train_round
    from organfed.shared.identity import TrustStore
    from organfed.shared.organ import LayerRange, extract_organ, load_organ, make_organ, save_organ
    from organfed.shared.protocol import ENVELOPE, INSTRUCTIONS, RoundInstructions, record_bytes, train_reply
    from organfed.shared.sealing import seal_organ

    def handler(msg: Message, context: Context) -> Message:
        if msg.metadata.message_type != "train":
            return client_app(msg, context)
        if poison == "tamper":
            reply = train_round(msg.content, node)
            blob = bytearray(record_bytes(reply[ENVELOPE]))
            blob[len(blob) // 2] ^= 0x01
            return Message(train_reply(bytes(blob), {"tokens": 192}), reply_to=msg)
        ins = RoundInstructions.from_record(msg.content[INSTRUCTIONS], TrustStore(node.trust_dir))
        scratch = node.state_dir / "evil"
        scratch.mkdir(parents=True, exist_ok=True)
        extract_organ(other_base or node.model_dir, scratch / "start.safetensors", LayerRange.parse(ins.layers) if ins.layers else None)
        organ = load_organ(scratch / "start.safetensors")
        change = {"scale": lambda t: t * 1000, "flip": lambda t: -t, "nan": lambda t: t.clone().fill_(float("nan")),
                  "other-base": lambda t: t, "unproven": lambda t: t + 0.01, "unchallenged": lambda t: t + 0.01}[poison]
        # A dishonest site holds its own key, so it can sign any provenance it likes; "unproven" claims none.
        claims = None if poison == "unproven" else {"initial_organ_digest": organ.manifest.tensor_digest, "tokens_seen": 192}
        bad = make_organ({k: change(v) for k, v in organ.tensors.items()}, organ.manifest, training=claims)
        save_organ(bad, scratch / "bad.safetensors")
        key, trust = site_key(node), TrustStore(node.trust_dir)
        envelope = seal_organ(scratch / "bad.safetensors", sender=key, recipient=trust.lookup(ins.coordinator_key_id),
                              run_id=ins.run_id, round=ins.round, ttl=ins.ttl,
                              nonce=None if poison == "unchallenged" else ins.nonce)  # "unchallenged": an envelope made beforehand
        return Message(train_reply(envelope, {"tokens": 192}), reply_to=msg)

    return handler


@pytest.fixture(scope="module")
def attacked(tmp_path_factory, federation):
    """The honest federation plus enrolled dishonest sites, and a separately built base for one of them."""
    root = tmp_path_factory.mktemp("attack")
    evil_names = ("tamper", "scale", "flip", "nan", "other-base", "unproven", "unchallenged")
    keys = make_federation_keys(root / "keys", (*SITES, *evil_names))
    other_base = write_tiny_model("gpt2", root / "other-base", seed=42)
    nodes = {}
    for name in (*SITES, *evil_names):
        honest = federation["nodes"].get(name) or federation["nodes"]["north"]
        nodes[name] = NodeConfig(name, federation["base"], honest.data, keys.sites[name].key_dir, keys.sites[name].trust_dir,
                                 root / "state" / name, "cpu")
    return {"root": root, "keys": keys, "nodes": nodes, "other_base": other_base, "base": federation["base"]}


def attack_run(fed, work: Path, sites: Iterable[str], method: str, **overrides) -> dict:
    handlers, nodes = {}, {}
    for i, name in enumerate(sites, start=201):
        node = fed["nodes"][name]
        handler = client_app if name in SITES else poisoned_site(node, name, fed["other_base"] if name == "other-base" else None)
        nodes[i] = (handler, Context(run_id=1, node_id=i, node_config=_node_config(node), state=RecordDict(), run_config={}))
    config = run_config({**fed, "root": fed_root(fed)}, work, **{"num-rounds": 1, "method": method, "min-sites": 3, **overrides})
    config["key-dir"] = str(fed["keys"].coordinator.key_dir)
    config["trust-dir"] = str(fed["keys"].coordinator.trust_dir)
    run_server(LocalGrid(nodes), config)
    report = json.loads((work / "runs" / "test-run" / "report.json").read_text())
    report["store"] = str(work / "store")  # where the round's result organ can be read back
    return report


def fed_root(fed) -> Path:
    return Path(fed["nodes"]["north"].data[0]).parent.parent


def north(report: dict) -> float:
    return report["evaluation"]["north"]["federated"]


def shift(report: dict, clean: dict) -> float:
    """How far the attacked round's organ lies from the clean one, relative to the clean organ's size."""
    import torch

    got = OrganStore(report["store"]).load(report["history"][0]["result"]).tensors
    ref = OrganStore(clean["store"]).load(clean["history"][0]["result"]).tensors
    diff = sum(float((got[k].double() - ref[k].double()).pow(2).sum()) for k in ref)
    size = sum(float(ref[k].double().pow(2).sum()) for k in ref)
    return (diff / size) ** 0.5


@pytest.fixture(scope="module")
def clean_runs(attacked, tmp_path_factory):
    """Reports of clean runs (the three honest sites), by method and overrides, computed once each."""
    cache: dict[tuple, dict] = {}

    def get(method: str, **overrides) -> dict:
        key = (method, tuple(sorted(overrides.items())))
        if key not in cache:
            cache[key] = attack_run(attacked, tmp_path_factory.mktemp("clean"), SITES, method, **overrides)
        return cache[key]

    return get


@pytest.mark.slow
def test_tampered_scaled_flipped_nan_foreign_unproven_and_unchallenged_organs_are_refused(attacked, clean_runs, tmp_path):
    clean = clean_runs("fedavg")
    evil = ("tamper", "scale", "flip", "nan", "other-base", "unproven", "unchallenged")
    report = attack_run(attacked, tmp_path / "attacked", (*SITES, *evil), "fedavg")
    refused = report["history"][0]["failures"]
    assert set(refused) == set(evil)
    assert sorted(report["history"][0]["accepted"]) == sorted(SITES)
    assert north(report) == pytest.approx(north(clean), rel=1e-4)
    lines = [json.loads(line) for line in (tmp_path / "attacked" / "audit.log").read_text().splitlines()]
    reasons = sorted(line["reason"] for line in lines if line["decision"] == "refuse")
    assert len(reasons) == len(evil) and {"policy", "organ-content", "wrong-nonce"} <= set(reasons), reasons
    assert not list((tmp_path / "attacked").glob("open-*")), "a refused organ left a file behind"


@pytest.mark.slow
@pytest.mark.parametrize("method,poison,overrides", [
    ("median", "flip", {"max-update-ratio": 0.0}),
    ("trimmed-mean", "flip", {"trim-fraction": 0.25, "max-update-ratio": 0.0}),
    ("clipped-mean", "scale", {"max-norm-ratio": 0.0, "max-update-ratio": 0.0}),
])
def test_robust_methods_neutralise_an_accepted_bad_organ(attacked, clean_runs, tmp_path, method, poison, overrides):
    """With the norm and update bounds off, the aggregation alone must absorb the bad organ."""
    clean = clean_runs(method, **overrides)
    report = attack_run(attacked, tmp_path / "attacked", (*SITES, poison), method, **overrides)
    assert poison in report["history"][0]["accepted"]
    assert shift(report, clean) < 0.2  # the spread among honest organs is ~0.1; plain fedavg moves >= 0.5
    assert north(report) <= north(clean) * 1.05


@pytest.mark.slow
@pytest.mark.parametrize("poison,overrides", [
    ("flip", {"max-update-ratio": 0.0}),
    ("scale", {"max-norm-ratio": 0.0, "max-update-ratio": 0.0}),
])
def test_plain_fedavg_is_moved_by_the_same_attacks(attacked, clean_runs, tmp_path, poison, overrides):
    """The contrast that gives the robust-method test its teeth, measured on the weights.

    (Perplexity makes a weak contrast here: a random-init tiny model is near-uniform already.)
    """
    clean = clean_runs("fedavg", **overrides)
    report = attack_run(attacked, tmp_path / "attacked", (*SITES, poison), "fedavg", **overrides)
    assert poison in report["history"][0]["accepted"]
    assert shift(report, clean) > 0.3  # a flipped organ alone moves the mean by half the organ's size


def failing_in_round(round_number: int) -> Handler:
    """A ClientApp that crashes while training in ``round_number`` (like a site that dies mid-round)."""
    def handler(msg: Message, context: Context) -> Message:
        if msg.metadata.message_type == "train" and msg.content["instructions"]["round"] == round_number:
            raise RuntimeError("site crashed")
        return client_app(msg, context)

    return handler


def test_a_failed_round_keeps_its_accepted_organs_and_resumes(federation, tmp_path):
    config = run_config(federation, tmp_path, **{"min-sites": 3})
    first = make_grid(federation, {"east": failing_in_round(2)})
    with pytest.raises(Exception, match="round 2: 2 organ\\(s\\) accepted, 3 required"):
        run_server(first, config)
    store = OrganStore(tmp_path / "store")
    kept = {a.site: a.digest for a in store.accepted("test-run", 2)}
    assert len(kept) == 2 and store.state("test-run").completed_rounds == 1
    second = make_grid(federation)
    run_server(second, config)
    trained = [node for node, kind in second.log if kind == "train"]
    assert len(trained) == 1, "only the site that had not delivered round 2 trains again"
    final = store.state("test-run")
    assert final.completed_rounds == 2
    assert set(kept.values()) <= set(final.history[1]["accepted"].values())


@pytest.mark.slow
def test_malformed_replies_and_stolen_site_names_are_contained(attacked, tmp_path):
    """A node replying garbage is refused; two nodes claiming one site's key both sit the round out."""
    from flwr.app import ConfigRecord

    from organfed.shared.protocol import ENVELOPE, hello_reply

    garbage_node = attacked["nodes"]["tamper"]

    def garbage(msg: Message, context: Context) -> Message:
        if msg.metadata.message_type == "train":
            return Message(RecordDict({ENVELOPE: ConfigRecord({"bytes": b"not an envelope"})}), reply_to=msg)
        return client_app(msg, context)

    def impostor(msg: Message, context: Context) -> Message:
        from organfed.client.round import site_key

        key_id = site_key(attacked["nodes"]["north"]).identity.key_id
        return Message(hello_reply(key_id, "north"), reply_to=msg)

    nodes = {}
    for i, (name, handler) in enumerate((("north", client_app), ("south", client_app), ("east", client_app),
                                         ("tamper", garbage), ("flip", impostor)), start=301):
        node = attacked["nodes"][name]
        nodes[i] = (handler, Context(run_id=1, node_id=i, node_config=_node_config(node), state=RecordDict(), run_config={}))
    config = run_config({**attacked, "root": fed_root(attacked)}, tmp_path, **{"num-rounds": 1, "min-sites": 2})
    config["key-dir"] = str(attacked["keys"].coordinator.key_dir)
    config["trust-dir"] = str(attacked["keys"].coordinator.trust_dir)
    run_server(LocalGrid(nodes), config)
    record = json.loads((tmp_path / "runs" / "test-run" / "report.json").read_text())["history"][0]
    assert sorted(record["accepted"]) == ["east", "south"]
    assert "malformed" in record["failures"][garbage_node.site_name]
    assert any("claimed by 2 nodes" in v for v in record["failures"].values())


def test_select_best_keeps_one_site_organ(federation, tmp_path):
    config = run_config(federation, tmp_path, **{"num-rounds": 1, "method": "select-best",
                                                 "val-data": str(federation["root"] / "val.txt")})
    run_server(make_grid(federation), config)
    record = json.loads((tmp_path / "runs" / "test-run" / "report.json").read_text())["history"][0]
    assert set(record["scores"]) == set(SITES)
    assert record["selected"] == min(record["scores"], key=record["scores"].get)
    assert record["result"] == record["accepted"][record["selected"]]


def test_per_site_composes_every_site_organ(federation, tmp_path):
    config = run_config(federation, tmp_path, **{"num-rounds": 2, "method": "per-site"})
    grid = make_grid(federation)
    run_server(grid, config)
    report = json.loads((tmp_path / "runs" / "test-run" / "report.json").read_text())
    assert report["placement"]["mode"] == "insert" and sorted(report["placement"]["organs"]) == sorted(SITES)
    assert len(set(report["placement"]["positions"])) == len(SITES)
    recipient = load_model(tmp_path / "runs" / "test-run" / "recipient")
    assert recipient.config.n_layer == 6 + 3 * len(SITES)
    # round 2: each site continued its own organ from round 1
    state = OrganStore(tmp_path / "store").state("test-run")
    assert state.history[1]["accepted"].keys() == state.history[0]["accepted"].keys()
