"""The coordinator's Flower ServerApp: thin; the work is in :mod:`organfed.server.rounds`."""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from organfed.server.config import ServerConfig
from organfed.server.coordinator import open_coordinator
from organfed.server.report import write_report
from organfed.server.rounds import run_rounds

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = ServerConfig.from_run_config(dict(context.run_config))
    coordinator = open_coordinator(config)
    with coordinator.store.lock(config.run_id):
        state = run_rounds(grid, coordinator)
        write_report(coordinator, state)
