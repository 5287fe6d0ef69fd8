"""DDP on CPU: two gloo processes train one epoch and end with identical weights."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from bnext.train import Trainer
from tests.helpers import tiny_config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, output: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    from bnext.train.distributed import cleanup

    trainer = Trainer(tiny_config(output, epochs=1))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    record = trainer.fit()
    torch.save(
        {"before": before, "after": trainer.model.state_dict(), "record": record, "batches": len(trainer.data.train)},
        f"{output}/rank{rank}.pt",
    )
    cleanup(trainer.info)


@pytest.mark.slow
def test_two_gloo_ranks_hold_the_same_weights_after_training(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert rank0["batches"] == rank1["batches"] == 96 // 16  # each rank: 48 images in batches of 8
    changed = 0
    for key, value in rank0["after"].items():
        if value.dtype.is_floating_point and "running" not in key:
            assert torch.equal(value, rank1["after"][key]), key
            changed += not torch.equal(value, rank0["before"][key])
    assert changed > 10
    assert rank0["record"]["val_top1"] == rank1["record"]["val_top1"]  # metrics reduced over ranks
    assert (tmp_path / "last.pt").is_file()  # written by rank 0 only
