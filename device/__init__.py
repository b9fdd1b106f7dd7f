"""The appliance: CLI, configuration, composition root, the simulated site."""
