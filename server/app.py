"""The coordinator's Flower ServerApp: thin; the work is in :mod:`organfed.server.rounds`."""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from organfed.server.config import ServerConfig
from organfed.server.coordinator import open_coordinator, start_run
from organfed.server.report import write_report
from organfed.server.rounds import run_rounds
from organfed.server.store import OrganStore

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = ServerConfig.from_run_config(dict(context.run_config))
    store = OrganStore(config.work_dir / "store")
    with store.lock(config.run_id):
        coordinator = open_coordinator(config, store)
        state = run_rounds(grid, coordinator, start_run(coordinator))
        write_report(coordinator, state)
