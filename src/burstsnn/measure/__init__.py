"""The measuring station: accuracy over t, firing rates, pooling ratio, operations and energy."""
