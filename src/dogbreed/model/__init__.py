"""the network and the LightningModule."""
