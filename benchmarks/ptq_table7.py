"""Paper Table 7 on a Fashion-MNIST BNext: test top-1 after PTQ of the stem (I), SE branch (S, E) and classifier (O).

Uses the demo's student checkpoint by default (train it with `make demo`).
Calibration only (8 training batches per configuration); --finetune-epochs adds
the paper's fine-tuning. Writes results/ptq_table7.json (calibration only) or
results/ptq_table7_finetuneN.json (with N fine-tuning epochs).

    python benchmarks/ptq_table7.py [--checkpoint runs/demo/student/last.pt] [--finetune-epochs 0]
"""

from __future__ import annotations

import argparse

import torch

from bnext.analysis import profile_model
from bnext.card import card_from_payload
from bnext.loading import model_from_checkpoint
from bnext.workflows import TABLE7_CONFIGS, checkpoint_data, quantize_and_evaluate

try:
    from benchmarks.common import write_result
except ImportError:
    from common import write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/demo/student/last.pt")
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--finetune-lr", type=float, default=1e-7)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, payload = model_from_checkpoint(args.checkpoint)
    data = checkpoint_data(payload, ["data.augment=none"])
    rows = []
    for config in TABLE7_CONFIGS:
        quantized, top1, top5 = quantize_and_evaluate(
            model, data, config, args.calibration_batches, args.finetune_epochs, args.finetune_lr
        )
        cost = profile_model(quantized, data.image_size)
        rows.append(
            {
                "config": config,
                "top1": top1,
                "top5": top5,
                "size_mib": cost.size_mib,
                "qops": cost.qops,
                "ops": cost.ops,
            }
        )
        print(f"{config:<18} top-1 {top1:6.2f}%  size {cost.size_mib:.3f} MiB", flush=True)
    name = "ptq_table7" if args.finetune_epochs == 0 else f"ptq_table7_finetune{args.finetune_epochs}"
    path = write_result(
        name,
        {
            "checkpoint": args.checkpoint,
            "card": card_from_payload(payload).as_dict(),
            "dataset": payload["config"]["data"]["dataset"],
            "calibration_batches": args.calibration_batches,
            "finetune_epochs": args.finetune_epochs,
            "rows": rows,
        },
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
