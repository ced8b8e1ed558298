"""``python -m pgqueue.bench [options]`` is ``pgqueue bench [options]``."""

from __future__ import annotations

import sys

from pgqueue.cli import app

app(args=["bench", *sys.argv[1:]], prog_name="python -m pgqueue.bench")
