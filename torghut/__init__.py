"""torghut-ta operator tooling: the `torghut` command, the local stack, the simulator, benchmarks."""
