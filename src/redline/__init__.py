"""redline: a verifiable, coordinated pause of frontier AI development."""

__version__ = "0.1.0"
