"""Generation: the runner (provider deltas → events) and the worker (claim, lease, sweep)."""
