"""`python -m daemon` is `sigd`."""

import sys

from daemon.service.cli import main

sys.exit(main())
