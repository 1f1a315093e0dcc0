"""A retrain worker that trains for real, then shapes the new model ($SIGD_TEST_SHAPE):
"flat" never trades, "short"/"long" always holds that side. Used by tests/test_retrain.py as
the retrain's "python" (`shaped.sh -m daemon.commands.worker job --spec ...` runs this module).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from daemon.commands.worker import main
from daemon.domain import Side
from daemon.retrain.jobs import TrainJob, from_json
from daemon.retrain.storage import local_path
from tests.daemon_harness import make_constant, set_threshold

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[0] == "compare":  # the nightly's validate step: `python -m daemon compare --validate ...`
        from daemon.service.cli import main as sigd

        sys.exit(sigd(argv))
    rc = main(argv)
    if rc == 0 and argv[0] == "job":
        job = from_json(Path(argv[argv.index("--spec") + 1]).read_text())
    if rc == 0 and argv[0] == "job" and isinstance(job, TrainJob):
        out, shape = local_path(job.out), os.environ["SIGD_TEST_SHAPE"]
        if shape == "flat":
            set_threshold(out, 1.01)  # no probability reaches it: always FLAT
        else:
            make_constant(out, Side[shape.upper()])
    sys.exit(rc)
