"""Config files, overrides and the YAML recipes under configs/."""

import pytest

import bnext
from bnext.config import RECIPES, load_config
from bnext.errors import UserError

CONFIGS = RECIPES


def test_overrides_merge_model_kwargs_and_read_numbers():
    config = load_config(
        None,
        [
            "model.kwargs.width_multiplier=0.25",
            "model.kwargs.stem_stride=1",
            "train.lr=3e-3",
            "train.betas=[0.9, 1e-3]",
        ],
    )
    assert config["model"]["kwargs"] == {"width_multiplier": 0.25, "stem_stride": 1}
    assert config["train"]["lr"] == 0.003 and config["train"]["betas"] == [0.9, 0.001]


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(UserError, match=r"unknown config key 'train.epoch' \(did you mean train.epochs\?\)"):
        load_config(None, ["train.epoch=3"])


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(UserError, match="neither a file nor a shipped recipe"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_recipe_loads_and_names_a_registered_model(path):
    config = load_config(path)
    assert config["model"]["name"] in bnext.list_models()


def test_imagenet_recipes_are_the_papers():
    for size, strong in (("tiny", "efficientnet_b2"), ("large", "convnext_tiny")):
        config = load_config(CONFIGS / "imagenet" / f"bnext_{size}.yaml")
        train = config["train"]
        assert (train["epochs"], train["batch_size"], train["lr"], train["warmup_epochs"]) == (512, 512, 1e-3, 5)
        assert train["betas"] == [0.99, 0.999] and train["clip_grad"] == 5.0
        assert (train["weight_decay_conv"], train["weight_decay_other"]) == (1e-8, 1e-3)
        assert config["data"]["randaugment"] == "rand-m7-mstd0.5"
        assert config["distill"]["strong"] == strong
    large = load_config(CONFIGS / "imagenet" / "bnext_large.yaml")
    assert large["distill"]["assistants"] == ["efficientnet_b0", "efficientnet_b4", "convnext_tiny"]
    cifar = load_config(CONFIGS / "cifar10" / "bnext18.yaml")
    assert (cifar["train"]["epochs"], cifar["train"]["batch_size"]) == (256, 128)


@pytest.mark.parametrize(
    "spec", ["imagenet/bnext_tiny", "imagenet/bnext_tiny.yaml", "configs/imagenet/bnext_tiny.yaml"]
)
def test_shipped_recipes_resolve_by_name_from_anywhere(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a checkout: the recipe comes from the package
    config = load_config(spec)
    assert config["model"]["name"] == "bnext_tiny" and config["distill"]["weighting"] == "authors_code"


def test_unknown_recipe_names_the_fix():
    with pytest.raises(UserError, match=r"did you mean imagenet/bnext_tiny\?.*bnext recipes"):
        load_config("imagenet/bnext_tinny")


def test_recipes_command_lists_every_shipped_recipe(capsys):
    from bnext.cli import main

    assert main(["recipes"]) == 0
    listed = capsys.readouterr().out.split()
    assert "imagenet/bnext_tiny" in listed and "fashion_mnist/default" in listed
    assert len(listed) == len(list(RECIPES.rglob("*.yaml")))
