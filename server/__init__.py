"""The coordinator: Flower ServerApp, round loop, organ store, aggregation, report."""
