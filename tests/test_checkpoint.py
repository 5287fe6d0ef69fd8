"""Checkpoint round trips and the clear refusal of bad files."""

import pytest
import torch

import bnext
from bnext.checkpoint import CheckpointError, read_checkpoint
from bnext.loading import model_from_checkpoint


def tiny(num_classes=10):
    return bnext.create_model("bnext_tiny", num_classes=num_classes, width_multiplier=0.25)


def test_round_trip_is_bit_exact(tmp_path):
    model = tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    path = bnext.save_checkpoint(
        model, tmp_path / "m.pt", model_name="bnext_tiny", model_kwargs={"num_classes": 10, "width_multiplier": 0.25}
    )
    loaded = bnext.create_model("bnext_tiny", num_classes=10, width_multiplier=0.25, checkpoint=path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    rebuilt, payload = model_from_checkpoint(path)
    assert payload["card"] == {
        "model": "bnext_tiny", "num_classes": 10, "kwargs": {"width_multiplier": 0.25}, "classes": [],
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "input_size": None, "dataset": None,
    }  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), rebuilt.eval()(x))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file at .*nope.pt"):
        bnext.load_checkpoint(tiny(), tmp_path / "nope.pt")


def test_truncated_file_is_refused(tmp_path):
    path = bnext.save_checkpoint(tiny(), tmp_path / "m.pt", model_name="bnext_tiny")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, damaged"):
        bnext.load_checkpoint(tiny(), path)


def test_corrupt_weights_fail_the_checksum(tmp_path):
    model = tiny()
    path = bnext.save_checkpoint(model, tmp_path / "m.pt", model_name="bnext_tiny")
    payload = torch.load(path, weights_only=True)
    payload["model"]["fc.weight"][0, 0] += 1.0  # a flipped value the zip container cannot see
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="corrupt"):
        read_checkpoint(path)


def test_mismatched_model_lists_keys_and_shapes(tmp_path):
    path = bnext.save_checkpoint(tiny(10), tmp_path / "m.pt", model_name="bnext_tiny")
    with pytest.raises(CheckpointError, match=r"shape mismatch: fc.weight: checkpoint \(10, 256\) vs model \(7, 256\)"):
        bnext.load_checkpoint(tiny(7), path)
    with pytest.raises(CheckpointError, match="missing.*unexpected"):
        bnext.load_checkpoint(bnext.create_model("bnext18", num_classes=10), path)


def test_no_partial_load_on_error(tmp_path):
    source = tiny(10)
    path = bnext.save_checkpoint(source, tmp_path / "m.pt", model_name="bnext_tiny")
    target = tiny(7)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError):
        bnext.load_checkpoint(target, path)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_foreign_files_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(text)
    listing = tmp_path / "list.pt"
    torch.save([1, 2, 3], listing)
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        read_checkpoint(listing)
    odd = tmp_path / "odd.pt"
    torch.save({"epoch": 3}, odd)
    with pytest.raises(CheckpointError, match="no model weights"):
        bnext.load_checkpoint(tiny(), odd)


def test_atomic_save_leaves_no_temp_files(tmp_path):
    bnext.save_checkpoint(tiny(), tmp_path / "a.pt")
    bnext.save_checkpoint(tiny(), tmp_path / "a.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_trained_checkpoint_card_holds_the_model_facts_once(tmp_path):
    from bnext.card import card_from_payload
    from bnext.train import Trainer
    from tests.helpers import tiny_config

    Trainer(tiny_config(tmp_path, epochs=1)).fit()
    payload = read_checkpoint(tmp_path / "last.pt")
    card = card_from_payload(payload)
    assert (card.model, card.num_classes, card.dataset, card.input_size) == ("bnext_tiny", 4, "synthetic", 32)
    assert card.classes == [f"class_{i}" for i in range(4)] and card.mean == (0.5,) * 3
    assert not {"model_name", "model_kwargs", "num_classes", "classes"} & set(payload)  # stored once


def test_cards_of_older_files_are_rebuilt():
    from bnext.card import card_from_payload

    legacy = {"model_name": "bnext18", "model_kwargs": {"num_classes": 10, "stem_stride": 1},
              "config": {"data": {"dataset": "cifar10", "image_size": 32}}}  # fmt: skip
    card = card_from_payload(legacy)
    assert card.create_kwargs() == {"num_classes": 10, "stem_stride": 1}
    assert card.mean == (0.4914, 0.4822, 0.4465) and card.input_size == 32
    assert card_from_payload({"state_dict": {}}) is None
