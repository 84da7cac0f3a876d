"""Progress you can watch: bars on a terminal, plain throttled lines in a log, a run's ETA and state file."""
