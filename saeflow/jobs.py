"""What every workflow script shares: logging into the rule's log, progress bars, clean failure.

A script calls `run_job(log_path, fn)`; user errors (SaeflowError) become one clear line on
stderr and in the log, and a non-zero exit, instead of a traceback. The script of a GPU rule
passes `gpu=snakemake.resources.gpu`, so that the job first claims a device of its own.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from tqdm import tqdm

from saeflow import gpu_slots
from saeflow.errors import SaeflowError

_log_stream = sys.stderr


def run_job(log_path: str | None, job: Callable[[], object], gpu: int = 0) -> None:
    global _log_stream
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        _log_stream = open(log_path, "a", buffering=1)
        handlers = [logging.StreamHandler(_log_stream)]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)  # library warnings go to the log: stderr keeps only the error line
    slot = None
    try:
        if gpu:  # before job(): CUDA reads the device list when the job first uses it
            slot = gpu_slots.claim_device()
        job()
    except SaeflowError as err:
        logging.getLogger("saeflow").error("%s", err)
        print(f"saeflow error: {err}", file=sys.stderr)
        sys.exit(1)
    finally:
        if slot:
            slot.release()


def progress(total: int | None, desc: str, unit: str = "it") -> tqdm:
    """A tqdm bar that writes into the job's log (a few updates a minute, not a flood)."""
    return tqdm(total=total, desc=desc, unit=unit, file=_log_stream, mininterval=10, unit_scale=True)
