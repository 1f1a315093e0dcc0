"""The built-in local exchange: a Binance-spot-protocol server replaying recorded bars.

It stands in for the outside world, so it imports nothing from the rest of the project.
"""

from daemon.localexchange.server import DEV_API_KEY, DEV_API_SECRET, LocalExchange, parse_start
from daemon.localexchange.tape import TapeError, bundled_tape_dir, load_tape

__all__ = ["DEV_API_KEY", "DEV_API_SECRET", "LocalExchange", "parse_start", "TapeError", "bundled_tape_dir", "load_tape"]
