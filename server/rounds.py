"""The round loop: choose sites, send, receive with a timeout, open and verify, store, aggregate.

Everything a round accepts is in the organ store before the round's result is
computed, and a round counts as done only once the run state says so; a
coordinator restarted with the same run id resumes at the first unfinished
round and keeps every organ already accepted in it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from organfed.server.aggregate import Contribution, Method, aggregate
from organfed.server.coordinator import Coordinator
from organfed.server.selection import select_best
from organfed.server.store import Accepted, RunState
from organfed.shared.errors import OrganfedError, VerificationError
from organfed.shared.identity import Identity
from organfed.shared.organ import Organ, make_organ, save_organ
from organfed.shared.protocol import ENVELOPE, HELLO, INSTRUCTIONS, METRICS, ORGAN, SITE, TRAIN, RoundInstructions, bytes_record, record_bytes
from organfed.shared.sealing import open_envelope, seal_organ

HELLO_TIMEOUT = 120.0
"""Longest wait for nodes to say which site they are (a node that died can take a minute to be noticed)."""


class RoundFailed(OrganfedError):
    """A round could not reach its quorum of accepted organs."""


class RoundSiteError(OrganfedError):
    """A site answered with an error instead of an organ."""


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
    """Ask each node which site key it holds; keep the ones enrolled in the trust directory."""
    nodes = list(nodes)
    timeout = min(HELLO_TIMEOUT, co.config.round_timeout)
    messages = [Message(RecordDict(), dst_node_id=n, message_type=HELLO, ttl=timeout, group_id=f"hello-{round_number}") for n in nodes]
    sites, failures = [], {}
    replies = _exchange(grid, messages, timeout)
    for node in nodes:
        reply = replies.get(node)
        if reply is None:
            failures[f"node {node}"] = "no reply to hello"
        elif reply.has_error():
            failures[f"node {node}"] = reply.error.reason
        else:
            try:
                sites.append(Site(node, co.trust.lookup(str(reply.content[SITE]["key_id"]))))
            except VerificationError as exc:
                failures[f"node {node}"] = f"{exc.reason}: {exc.detail}"
    return sites, failures


def _instructions(co: Coordinator, round_number: int) -> RoundInstructions:
    cfg = co.config
    return RoundInstructions(
        run_id=cfg.run_id, round=round_number, base_fingerprint=co.base_fingerprint, layers=cfg.layers,
        coordinator_key_id=co.key.identity.key_id, ttl=int(cfg.round_timeout) + 600, train=cfg.train.hyperparameters(),
    )


def _current_for(state: RunState, site: Site, method: Method) -> str | None:
    return state.per_site.get(site.identity.key_id) if method is Method.PER_SITE else state.current


def _train_message(co: Coordinator, state: RunState, site: Site, round_number: int) -> Message:
    content = RecordDict({INSTRUCTIONS: _instructions(co, round_number).to_record()})
    digest = _current_for(state, site, co.config.method)
    if digest is not None:
        sealed = seal_organ(co.store.object_path(digest), sender=co.key, recipient=site.identity, run_id=co.config.run_id,
                            round=round_number, ttl=int(co.config.round_timeout) + 600)
        content[ORGAN] = bytes_record(sealed)
    return Message(content, dst_node_id=site.node_id, message_type=TRAIN, ttl=co.config.round_timeout, group_id=str(round_number))


def _accept(co: Coordinator, site: Site, reply: Message, round_number: int, scratch: Path) -> Accepted:
    if reply.has_error():
        raise RoundSiteError(f"site error: {reply.error.reason}")
    opened = open_envelope(
        record_bytes(reply.content[ENVELOPE]), key=co.key, trust=co.trust, run_id=co.config.run_id, round=round_number,
        replay=co.replay, out=scratch / f"{site.identity.key_id}.safetensors", policy=co.policy, audit=co.audit,
        expected_sender=site.identity.key_id,
    )
    metrics = {k: float(v) for k, v in reply.content[METRICS].items()} if METRICS in reply.content else {}
    digest = co.store.put(opened.path)
    accepted = Accepted(site=opened.sender.key_id, digest=digest, tokens=int(metrics.get("tokens", 0)),
                        metrics={**metrics, "norm": opened.norm})
    co.store.record_accepted(co.config.run_id, round_number, accepted)
    return accepted


def run_round(grid: Grid, co: Coordinator, state: RunState, round_number: int) -> RunState:
    """Run one round to completion (or raise :class:`RoundFailed`); return the new state, not yet saved."""
    cfg = co.config
    accepted = {a.site: a for a in co.store.accepted(cfg.run_id, round_number)}
    if accepted:
        co.event("resume-round", round=round_number, already_accepted=sorted(accepted))
    nodes = wait_for_nodes(grid, cfg.wait_for_sites or cfg.min_sites, cfg.connect_timeout)
    sites, failures = greet(grid, co, nodes, round_number)
    todo = [s for s in sites if s.identity.key_id not in accepted]
    co.event("round-start", round=round_number, nodes=len(nodes), sites=[s.identity.name for s in todo])
    messages = {s.identity.key_id: _train_message(co, state, s, round_number) for s in todo}
    replies = _exchange(grid, list(messages.values()), cfg.round_timeout) if messages else {}
    with tempfile.TemporaryDirectory(prefix="open-", dir=cfg.work_dir) as tmp:
        for site in todo:
            reply = replies.get(site.node_id)
            if reply is None:
                failures[site.identity.name] = f"no reply within {cfg.round_timeout:g} s"
                continue
            try:
                accepted[site.identity.key_id] = _accept(co, site, reply, round_number, Path(tmp))
                co.event("accepted", round=round_number, site=site.identity.name, tokens=accepted[site.identity.key_id].tokens)
            except OrganfedError as exc:
                reason = getattr(exc, "reason", "") or type(exc).__name__
                failures[site.identity.name] = f"{reason}: {exc}"
                co.event("refused", round=round_number, site=site.identity.name, reason=str(exc))
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
    start = co.store.load(state.current) if state.current else co.start
    names = {a.site: co.trust.lookup(a.site).name for a in accepted}
    record = {"round": round_number, "accepted": {names[a.site]: a.digest for a in accepted}, "failures": failures,
              "tokens": sum(a.tokens for a in accepted)}
    if cfg.method is Method.PER_SITE:
        per_site = {**state.per_site, **{a.site: a.digest for a in accepted}}
        co.event("round-done", round=round_number, method=cfg.method.value, sites=len(per_site))
        return RunState(cfg.run_id, round_number, state.current, per_site, [*state.history, record])
    contributions = [Contribution(a.site, co.store.load(a.digest), a.tokens) for a in accepted]
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
        digest = _store_organ(co, merged)
    record["result"] = digest
    co.event("round-done", round=round_number, method=cfg.method.value, result=digest[:12], accepted=sorted(names.values()))
    return RunState(cfg.run_id, round_number, digest, state.per_site, [*state.history, record])


def _store_organ(co: Coordinator, organ: Organ) -> str:
    with tempfile.TemporaryDirectory(prefix="organ-", dir=co.config.work_dir) as tmp:
        return co.store.put(save_organ(organ, Path(tmp) / "organ.safetensors"))


def run_rounds(grid: Grid, co: Coordinator) -> RunState:
    """All rounds not yet done for this run id; each finished round is saved before the next starts."""
    state = co.store.state(co.config.run_id)
    if state.completed_rounds:
        co.event("resume", completed_rounds=state.completed_rounds)
    for round_number in range(state.completed_rounds + 1, co.config.num_rounds + 1):
        state = run_round(grid, co, state, round_number)
        co.store.save_state(state)
    return state
