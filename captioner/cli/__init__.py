"""Hydra entry points. Each ``main(cfg)`` turns the config into plain arguments for ``run``."""
