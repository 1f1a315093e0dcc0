"""sigd: a live-trading signal daemon for crypto."""

__version__ = "0.1.0"
