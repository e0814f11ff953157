"""The round loop: choose sites, send, receive with a timeout, open and verify, store, aggregate.

Everything a round accepts is in the organ store before the round's result is
computed, and a round counts as done only once the run state says so; a
coordinator restarted with the same run id resumes at the first unfinished
round and keeps every organ already accepted in it. Whatever one node sends,
the worst it can do is be refused: every reply is parsed defensively.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from organfed.client.config import MAX_SEED
from organfed.server.aggregate import Contribution, Method, aggregate
from organfed.server.coordinator import Coordinator
from organfed.server.selection import select_best
from organfed.server.store import Accepted, RunState
from organfed.shared.errors import ConfigError, OrganfedError, PolicyError, VerificationError
from organfed.shared.identity import Identity
from organfed.shared.manifest import Manifest
from organfed.shared.organ import Organ, load_organ, make_organ, save_organ
from organfed.shared.protocol import ENVELOPE, HELLO, INSTRUCTIONS, METRICS, ORGAN, SITE, TRAIN, RoundInstructions, bytes_record, record_bytes
from organfed.shared.replay import CLOCK_SKEW
from organfed.shared.sealing import open_envelope, seal_organ

HELLO_TIMEOUT = 120.0
"""Longest wait for nodes to say which site they are (a node that died can take a minute to be noticed)."""
_MALFORMED = (KeyError, TypeError, AttributeError, ValueError)


class RoundFailed(OrganfedError):
    """A round could not reach its quorum of accepted organs."""


@dataclass(frozen=True)
class Site:
    node_id: int
    identity: Identity


def wait_for_nodes(grid: Grid, want: int, timeout: float) -> list[int]:
    """Node ids once ``want`` are connected, or whatever is connected when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= want or time.monotonic() >= deadline:
            return nodes
        time.sleep(1.0)


def _exchange(grid: Grid, messages: list[Message], timeout: float) -> dict[int, Message]:
    """Send ``messages``; return the replies by destination node (missing ones left out)."""
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    by_id = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
    return {by_id[r.metadata.reply_to_message_id]: r for r in replies if r.metadata.reply_to_message_id in by_id}


def greet(grid: Grid, co: Coordinator, nodes: Iterable[int], round_number: int) -> tuple[list[Site], dict[str, str]]:
    """Ask each node which site key it holds; keep enrolled sites claimed by exactly one node."""
    nodes = list(nodes)
    timeout = min(HELLO_TIMEOUT, co.config.round_timeout)
    messages = [Message(RecordDict(), dst_node_id=n, message_type=HELLO, ttl=timeout, group_id=f"hello-{round_number}") for n in nodes]
    replies = _exchange(grid, messages, timeout)
    claims: dict[str, list[int]] = {}
    failures: dict[str, str] = {}
    for node in nodes:
        reply = replies.get(node)
        if reply is None:
            failures[f"node {node}"] = "no reply to hello"
        elif reply.has_error():
            failures[f"node {node}"] = reply.error.reason
        else:
            try:
                claims.setdefault(str(reply.content[SITE]["key_id"]), []).append(node)
            except _MALFORMED:
                failures[f"node {node}"] = "malformed hello reply"
    sites = []
    for key_id, claimants in sorted(claims.items()):
        if len(claimants) > 1:  # a hello is unauthenticated: never let one node crowd out a site
            failures[f"key {key_id}"] = f"claimed by {len(claimants)} nodes; none is asked this round"
            continue
        try:
            sites.append(Site(claimants[0], co.trust.lookup(key_id)))
        except VerificationError as exc:
            failures[f"node {claimants[0]}"] = f"{exc.reason}: {exc.detail}"
    return sites, failures


def round_seed(seed: int, round_number: int) -> int:
    """Each round's training seed: a new batch order and new dropout masks every round (``split-seed``
    stays, so a site's validation blocks never move)."""
    return (seed + 7919 * round_number) % MAX_SEED


def _instructions(co: Coordinator, round_number: int, nonce: str) -> RoundInstructions:
    cfg = co.config
    train = {**cfg.train.hyperparameters(), "seed": round_seed(cfg.train.seed, round_number)}
    return RoundInstructions(
        run_id=cfg.run_id, round=round_number, base_fingerprint=co.base_fingerprint, layers=cfg.layers,
        coordinator_key_id=co.key.identity.key_id, ttl=_ttl(co), nonce=nonce, train=train,
    )


def _ttl(co: Coordinator) -> int:
    return int(co.config.round_timeout) + 600


def _current_for(state: RunState, site_key: str, method: Method) -> str | None:
    return state.per_site.get(site_key) if method is Method.PER_SITE else state.current


def _train_message(co: Coordinator, state: RunState, site: Site, round_number: int, nonce: str) -> Message:
    content = RecordDict({INSTRUCTIONS: _instructions(co, round_number, nonce).to_record(co.key)})
    digest = _current_for(state, site.identity.key_id, co.config.method)
    if digest is not None:
        sealed = seal_organ(co.store.object_path(digest), sender=co.key, recipient=site.identity, run_id=co.config.run_id,
                            round=round_number, ttl=_ttl(co))
        content[ORGAN] = bytes_record(sealed)
    return Message(content, dst_node_id=site.node_id, message_type=TRAIN, ttl=co.config.round_timeout, group_id=str(round_number))


def _check_update(co: Coordinator, organ: Organ, start: Organ) -> None:
    """Refuse an update (organ minus its starting organ) larger than ``max-update-ratio`` × the start's norm."""
    ratio = co.config.max_update_ratio
    if not ratio:
        return
    update = sum(float((organ.tensors[k].float() - t.float()).pow(2).sum()) for k, t in start.tensors.items()) ** 0.5
    bound = ratio * sum(float(t.float().pow(2).sum()) for t in start.tensors.values()) ** 0.5
    if not update <= bound:
        raise PolicyError(f"update norm {update:.6g} exceeds {ratio:g} x the starting organ's norm ({bound:.6g})")


def _provenance_check(co: Coordinator, state: RunState, site: Site):
    """The coordinator's own checks of an opened organ, run before it is accepted (refusals are audited)."""
    digest = _current_for(state, site.identity.key_id, co.config.method)
    start = co.load(digest) if digest else co.start

    def inspect(path: Path, manifest: Manifest) -> None:
        training = manifest.training or {}
        if training.get("initial_organ_digest") != start.manifest.tensor_digest:
            raise PolicyError("the organ was not trained from this round's organ")
        tokens = training.get("tokens_seen")
        if type(tokens) is not int or tokens < 0:
            raise PolicyError(f"the organ's signed manifest gives no valid token count ({tokens!r})")
        _check_update(co, load_organ(path), start)

    return inspect


def _accept(co: Coordinator, state: RunState, site: Site, reply: Message, round_number: int, nonce: str,
            scratch: Path) -> Accepted:
    """Open, verify and store one site's organ; any defect raises a typed error."""
    if reply.has_error():
        raise ConfigError(f"site error: {reply.error.reason}")
    try:
        envelope = record_bytes(reply.content[ENVELOPE])
        metrics = {str(k): float(v) for k, v in reply.content[METRICS].items()} if METRICS in reply.content else {}
    except _MALFORMED:
        raise ConfigError("malformed reply (no envelope, or metrics that are not numbers)") from None
    opened = open_envelope(
        envelope, key=co.key, trust=co.trust, run_id=co.config.run_id, round=round_number, replay=co.replay,
        out=scratch / f"{site.identity.key_id}.safetensors", policy=co.policy, audit=co.audit,
        expected_sender=site.identity.key_id, expected_nonce=nonce, max_ttl=_ttl(co) + CLOCK_SKEW,
        inspect=_provenance_check(co, state, site),
    )
    stored = co.store.put(opened.path)
    accepted = Accepted(site=opened.sender.key_id, name=opened.sender.name, digest=stored,
                        tokens=opened.manifest.training["tokens_seen"], metrics={**metrics, "norm": opened.norm})
    co.store.record_accepted(co.config.run_id, round_number, accepted)
    return accepted


def _still_trusted(co: Coordinator, accepted: dict[str, Accepted], round_number: int) -> dict[str, Accepted]:
    """Accepted organs of sites that are still enrolled (a site revoked since is dropped, with an event)."""
    kept = {}
    for key, a in accepted.items():
        try:
            co.trust.lookup(key)
            kept[key] = a
        except VerificationError as exc:
            co.event("dropped", round=round_number, site=a.name, reason=exc.reason)
    return kept


def run_round(grid: Grid, co: Coordinator, state: RunState, round_number: int) -> RunState:
    """Run one round to completion (or raise :class:`RoundFailed`); return the new state, not yet saved."""
    cfg = co.config
    accepted = _still_trusted(co, {a.site: a for a in co.store.accepted(cfg.run_id, round_number)}, round_number)
    if accepted:
        co.event("resume-round", round=round_number, already_accepted=sorted(a.name for a in accepted.values()))
    nodes = wait_for_nodes(grid, cfg.wait_for_sites or cfg.min_sites, cfg.connect_timeout)
    sites, failures = greet(grid, co, nodes, round_number)
    todo = [s for s in sites if s.identity.key_id not in accepted]
    co.event("round-start", round=round_number, nodes=len(nodes), sites=[s.identity.name for s in todo])
    nonces = {s.node_id: os.urandom(16).hex() for s in todo}  # a fresh challenge per site; only this attempt's replies count
    messages = [_train_message(co, state, s, round_number, nonces[s.node_id]) for s in todo]
    replies = _exchange(grid, messages, cfg.round_timeout) if messages else {}
    with tempfile.TemporaryDirectory(prefix="open-", dir=cfg.work_dir) as tmp:
        for site in todo:
            name = site.identity.name
            reply = replies.get(site.node_id)
            if reply is None:
                failures[name] = f"no reply within {cfg.round_timeout:g} s"
                continue
            try:
                accepted[site.identity.key_id] = _accept(co, state, site, reply, round_number, nonces[site.node_id], Path(tmp))
                co.event("accepted", round=round_number, site=name, tokens=accepted[site.identity.key_id].tokens)
            except OrganfedError as exc:
                failures[name] = f"{getattr(exc, 'reason', '') or type(exc).__name__}: {exc}"
                co.event("refused", round=round_number, site=name, reason=str(exc))
    if len(accepted) < cfg.min_sites:
        co.event("round-failed", round=round_number, accepted=len(accepted), failures=failures)
        raise RoundFailed(
            f"round {round_number}: {len(accepted)} organ(s) accepted, {cfg.min_sites} required; "
            + "; ".join(f"{k}: {v}" for k, v in sorted(failures.items()))
        )
    return conclude_round(co, state, round_number, list(accepted.values()), failures)


def conclude_round(co: Coordinator, state: RunState, round_number: int, accepted: list[Accepted], failures: dict[str, str]) -> RunState:
    """Aggregate or select from the accepted organs; store the result; return the new state."""
    cfg = co.config
    record = {"round": round_number, "accepted": {a.name: a.digest for a in accepted}, "failures": failures,
              "tokens": sum(a.tokens for a in accepted)}
    if cfg.method is Method.PER_SITE:
        per_site = {**state.per_site, **{a.site: a.digest for a in accepted}}
        co.event("round-done", round=round_number, method=cfg.method.value, accepted=sorted(record["accepted"]))
        return RunState(cfg.run_id, round_number, state.current, per_site, [*state.history, record], state.spec)
    start = co.load(state.current) if state.current else co.start
    contributions = [Contribution(a.site, co.load(a.digest), a.tokens) for a in accepted]
    names = {a.site: a.name for a in accepted}
    if cfg.method is Method.SELECT_BEST:
        best, scores = select_best(co, contributions)
        digest = next(a.digest for a in accepted if a.site == best.site)
        record["scores"] = {names[k]: v for k, v in scores.items()}
        record["selected"] = names[best.site]
    else:
        tensors = aggregate(cfg.method, contributions, start=start, trim_fraction=cfg.trim_fraction,
                            clip_norm=cfg.clip_norm or None)
        merged = make_organ(tensors, start.manifest, training={
            "federated": {"run_id": cfg.run_id, "round": round_number, "method": cfg.method.value,
                          "sites": sorted(names.values()), "tokens": record["tokens"],
                          "site_organs": sorted(a.digest for a in accepted)},
        })
        if not all(torch.isfinite(t).all() for t in merged.tensors.values()):
            raise RoundFailed(f"round {round_number}: the {cfg.method.value} result is not finite")
        digest = _store_organ(co, merged)
    record["result"] = digest
    co.event("round-done", round=round_number, method=cfg.method.value, result=digest[:12], accepted=sorted(record["accepted"]))
    return RunState(cfg.run_id, round_number, digest, state.per_site, [*state.history, record], state.spec)


def _store_organ(co: Coordinator, organ: Organ) -> str:
    with tempfile.TemporaryDirectory(prefix="organ-", dir=co.config.work_dir) as tmp:
        return co.store.put(save_organ(organ, Path(tmp) / "organ.safetensors"))


def run_rounds(grid: Grid, co: Coordinator, state: RunState) -> RunState:
    """All rounds not yet done; each finished round is saved before the next starts."""
    if state.completed_rounds:
        co.event("resume", completed_rounds=state.completed_rounds)
    for round_number in range(state.completed_rounds + 1, co.config.num_rounds + 1):
        state = run_round(grid, co, state, round_number)
        co.store.save_state(state)
    return state
