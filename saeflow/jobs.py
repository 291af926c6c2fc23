"""What every workflow script shares: logging into the rule's log, progress bars, clean failure.

A script calls `run_job(log_path, fn)`; user errors (SaeflowError) become one clear line on
stderr and in the log, and a non-zero exit, instead of a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from tqdm import tqdm

from saeflow.errors import SaeflowError

_log_stream = sys.stderr


def run_job(log_path: str | None, job: Callable[[], object]) -> None:
    global _log_stream
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        _log_stream = open(log_path, "a", buffering=1)
        handlers = [logging.StreamHandler(_log_stream)]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        job()
    except SaeflowError as err:
        logging.getLogger("saeflow").error("%s", err)
        print(f"saeflow error: {err}", file=sys.stderr)
        sys.exit(1)


def progress(total: int | None, desc: str, unit: str = "it") -> tqdm:
    """A tqdm bar that writes into the job's log (a few updates a minute, not a flood)."""
    return tqdm(total=total, desc=desc, unit=unit, file=_log_stream, mininterval=10, unit_scale=True)
