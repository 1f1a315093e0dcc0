"""mkdocs hook (mkdocs.yml `hooks:`): add the generated reference pages to the site at build time.

The pages come from `docs/gen_reference.py`; they exist only in the build, never in git, so
they always describe the code being built.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

gen_reference = importlib.import_module("gen_reference")  # importable once docs/ is on the path


def on_files(files: Any, config: Any) -> Any:
    """Append every generated page as a virtual file (no file is written into docs/)."""
    from mkdocs.structure.files import File

    for rel, make in gen_reference.PAGES.items():
        files.append(File.generated(config, rel, content=make()))
    return files
