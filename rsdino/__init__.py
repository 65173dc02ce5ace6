"""rsdino: reproducible self-supervised DINO-family pretraining for remote-sensing imagery."""

__version__ = "0.1.0"
