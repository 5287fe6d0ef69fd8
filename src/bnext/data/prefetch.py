"""Run a batch iterator one or more batches ahead in a background thread (on a side CUDA stream).

The gpu pipeline decodes and augments in the training process; without this, that
host work would sit between training steps. torch releases the GIL inside its ops,
so the thread's decode / augmentation overlaps the main thread's step. On CUDA the
thread works on its own stream; the consumer's stream waits on an event recorded
after each batch, so no batch is read before it is ready.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch

_DONE = object()


def _mark_ready(batch: Any, stream: Any) -> Any:
    if stream is None:
        return batch, None
    event = torch.cuda.Event()
    event.record(stream)
    return batch, event


def _hand_over(batch: Any, event: Any) -> Any:
    """Make the consumer's stream wait for the producer's work, and keep the memory alive on it."""
    if event is None:
        return batch
    current = torch.cuda.current_stream()
    current.wait_event(event)
    for item in batch:
        if isinstance(item, torch.Tensor) and item.is_cuda:
            item.record_stream(current)
    return batch


def prefetch(batches: Iterator[Any], device: torch.device, depth: int = 2) -> Iterator[Any]:
    """Yield the items of ``batches`` (tuples of tensors and numbers), produced ``depth`` ahead by a thread."""
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            with torch.cuda.stream(stream) if stream is not None else nullcontext():
                for batch in batches:
                    if stop.is_set():
                        return
                    ready.put(_mark_ready(batch, stream))
            ready.put((_DONE, None))
        except BaseException as error:  # handed to the consumer, raised there
            ready.put((error, None))

    worker = threading.Thread(target=produce, name="bnext-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            batch, event = ready.get()
            if batch is _DONE:
                return
            if isinstance(batch, BaseException):
                raise batch
            yield _hand_over(batch, event)
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
