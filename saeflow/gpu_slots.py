"""One device per concurrent GPU job on a machine with several GPUs.

Snakemake counts `--resources gpu=N` but names no device, so every `gpu=1` job would start on
device 0. A job claims slot i by holding an exclusive flock on `slot-<i>.lock` for its whole life
and sets CUDA_VISIBLE_DEVICES to the i-th device before torch initialises CUDA (which it does
lazily, at first use). The kernel drops the lock when the process exits or is killed, SIGKILL
included, so a dead job never keeps its device.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from saeflow.errors import SaeflowError

log = logging.getLogger(__name__)

# Relative to the job's working directory (Snakemake's workdir), one folder per host: on a cluster
# the workdir is shared, and each machine has its own devices.
SLOT_DIR = Path(".snakemake", "saeflow", "gpu-slots")
# Under matching --resources gpu=N a slot is busy only for the moment between a job's exit and
# Snakemake starting the next; a long wait means more GPU jobs run than there are slots.
WAIT_S = 600.0


@dataclass
class GpuSlot:
    index: int
    device: str  # the CUDA_VISIBLE_DEVICES entry the job runs on
    lock_file: IO

    def release(self) -> None:
        self.lock_file.close()


def shared_devices(environ=os.environ) -> list[str]:
    """The devices this machine's GPU jobs share out, one per slot: SAEFLOW_GPU_SLOTS of them if
    set, else those CUDA_VISIBLE_DEVICES lists, else every device torch counts."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    listed = None if visible is None else [d.strip() for d in visible.split(",") if d.strip()]
    setting = environ.get("SAEFLOW_GPU_SLOTS")
    if setting is not None:
        if not setting.strip().isdigit():
            raise SaeflowError(f"SAEFLOW_GPU_SLOTS={setting!r}: set it to the number of GPUs to share "
                               "out (0 turns device assignment off)")
        n = int(setting)
        if listed is None:
            return [str(i) for i in range(n)]
        if n > len(listed):
            raise SaeflowError(f"SAEFLOW_GPU_SLOTS={n} but CUDA_VISIBLE_DEVICES={visible!r} lists "
                               f"{len(listed)} devices; lower one or list more devices")
        return listed[:n]
    if listed is not None:
        return listed
    import torch  # here, not at the top: the slot count alone needs no torch

    # Counted through NVML, which leaves CUDA uninitialised, so the device can still be chosen.
    return [str(i) for i in range(torch.cuda.device_count())]


def claim_slot(devices: list[str], wait_s: float = WAIT_S, poll_s: float = 1.0) -> GpuSlot:
    """The first free slot of `devices`, locked until released or until this process ends; waits
    up to wait_s while all are busy."""
    folder = SLOT_DIR / socket.gethostname()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    next_note = start
    while True:
        for index, device in enumerate(devices):
            lock_file = _lock(folder / f"slot-{index}.lock")
            if lock_file:
                return GpuSlot(index, device, lock_file)
        now = time.monotonic()
        if now - start >= wait_s:
            raise SaeflowError(f"all {len(devices)} GPU slots in {folder} stayed busy for {wait_s:.0f} s: run "
                               f"Snakemake with --resources gpu=N, N at most {len(devices)}, so that it starts "
                               "no more GPU jobs than there are devices")
        if now >= next_note:
            log.info("all %d gpu slots busy, waiting for one to free (%s)", len(devices), folder)
            next_note = now + 60
        time.sleep(poll_s)


def _lock(path: Path) -> IO | None:
    lock_file = open(path, "a")  # not inherited by programs the job starts (Python's default)
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        return None
    except OSError as err:
        lock_file.close()
        raise SaeflowError(f"cannot lock {path} ({err}): the working directory's file system has no "
                           "flock; set SAEFLOW_GPU_SLOTS=0 to turn device assignment off") from None
    return lock_file


def claim_device(wait_s: float = WAIT_S) -> GpuSlot | None:
    """Give this GPU job a device of its own: claim a slot and make its device the only one CUDA
    sees. None (and nothing changed) with fewer than two devices, where there is nothing to choose."""
    devices = shared_devices()
    if len(devices) < 2:
        return None
    slot = claim_slot(devices, wait_s)
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.device
    torch = sys.modules.get("torch")
    # CUDA started earlier in this process read the old list and still sees every device; the
    # job would then share the first one with the others.
    if torch is not None and torch.cuda.device_count() > 1:
        slot.release()
        raise SaeflowError("CUDA started in this job before saeflow chose its device: set CUDA_VISIBLE_DEVICES "
                           "to the GPUs to use (e.g. 0,1) so that they are counted without starting CUDA, or "
                           "SAEFLOW_GPU_SLOTS=0 to turn device assignment off")
    log.info("gpu slot %d -> device %s", slot.index, slot.device)
    return slot
