"""The experiment station: config checks, one job end to end, the ANN cache, loggers, summary."""
