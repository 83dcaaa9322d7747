"""The ANN station: the paper's networks, the LightningModule that trains them, the data."""
