"""kubepulse: the command line that wires collectors/, streams/, models/ and kibana/ together."""

__all__ = ["__version__"]
__version__ = "0.1.0"
