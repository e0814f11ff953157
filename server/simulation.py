"""``organfed simulate``: many virtual sites on Flower's simulation engine (Ray), one process.

The simulation engine gives each virtual SuperNode only a ``partition-id``; organfed's
ClientApp then reads that site's configuration (keys, trust, data, state) from the
directory named by the run config's ``simulation-sites``, which :func:`prepare_sites`
writes. The demo corpora are shared out: virtual site *i* gets domain *i mod 3* and
every *k*-th record of that domain's training text. There is no network, TLS or
SuperNode authentication here (nothing crosses a wire); organs are still sealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from organfed.client.config import TrainMode
from organfed.client.node import NodeConfig
from organfed.server.aggregate import Method
from organfed.server.demo import demo_run_config, follow_run, show_report, terminate_as_exit
from organfed.server.enrolment import make_federation_keys
from organfed.server.federation import LocalFederation
from organfed.server.flower_app import write_flower_app
from organfed.shared.atomic import write_bytes_atomic, write_json_atomic
from organfed.shared.demo.base_model import demo_base_dir
from organfed.shared.demo.corpora import SITE_DOMAINS, build_demo_corpora, read_split
from organfed.shared.demo.records import records_to_text
from organfed.shared.errors import ConfigError


@dataclass(frozen=True)
class SimulationConfig:
    workdir: Path
    corpora_dir: Path
    num_sites: int = 6
    rounds: int = 2
    method: Method = Method.FEDAVG
    mode: TrainMode = TrainMode.IN_SITU
    steps: int = 10
    learning_rate: float = 1e-3
    timeout: float = 3600.0
    device: str = "cpu"
    eval_max_tokens: int = 20_000

    def __post_init__(self) -> None:
        if self.num_sites < 1:
            raise ConfigError(f"--sites must be >= 1, got {self.num_sites}")


def prepare_sites(config: SimulationConfig, corpora, keys) -> Path:
    """One ``<partition-id>.json`` node configuration per virtual site, with its shard of text."""
    sites = config.workdir / "sites"
    per_domain = {d: [i for i in range(config.num_sites) if i % len(SITE_DOMAINS) == j] for j, d in enumerate(SITE_DOMAINS)}
    for domain, members in per_domain.items():
        records = read_split(corpora, domain, "train")
        for k, index in enumerate(members):
            name = site_name(index)
            shard = sites / name / "train.txt"
            write_bytes_atomic(shard, records_to_text(records[k :: len(members)]))
            node = NodeConfig(name, demo_base_dir(), (shard,), keys.sites[name].key_dir, keys.sites[name].trust_dir,
                              sites / name / "state", config.device)
            write_json_atomic(sites / f"{index}.json", node.to_dict())
    return sites


def site_name(index: int) -> str:
    return f"site-{index:03d}-{SITE_DOMAINS[index % len(SITE_DOMAINS)].value}"


def run_simulation(config: SimulationConfig) -> Path:
    """Run the virtual federation; return the report's path."""
    try:
        import ray  # noqa: F401  (only to fail early with a clear message)
    except ImportError:
        raise ConfigError("the simulation engine needs Ray: pip install 'organfed[simulation]'") from None
    with terminate_as_exit():
        work = config.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
        print(f"organfed simulate in {work}: {config.num_sites} virtual sites on Flower's simulation engine")
        corpora = build_demo_corpora(config.corpora_dir)
        keys = make_federation_keys(work / "keys", [site_name(i) for i in range(config.num_sites)])
        sites = prepare_sites(config, corpora, keys)
        run_config = demo_run_config(work, keys, corpora, rounds=config.rounds, method=config.method, mode=config.mode,
                                     steps=config.steps, learning_rate=config.learning_rate, device=config.device,
                                     min_sites=config.num_sites, wait_for=config.num_sites)
        run_config["simulation-sites"] = str(sites)
        run_config["eval-max-tokens"] = config.eval_max_tokens
        with LocalFederation(work / "federation") as fed:
            fed.start_superlink(simulation=True)
            run_id = fed.submit(write_flower_app(work / "app"), run_config, virtual_nodes=config.num_sites)
            follow_run(fed, run_id, work, organs=config.rounds * config.num_sites, timeout=config.timeout)
        return show_report(work)

