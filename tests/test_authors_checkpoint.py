"""Authors' checkpoints (``hpi-xnor/BNext`` layout) load into our models and give the same logits."""

import re

import pytest
import torch

import bnext
from tests.authors_reference import bnext18_forward, bnext_forward


@pytest.fixture(autouse=True)
def torch_convs_only(monkeypatch):
    """The reference runs F.conv2d; with random N(0, 1) weights a deep BNN is chaotic, so a sum taken in
    another order (the tiny-map matrix product, tested against F.conv2d in test_small_map) can flip a sign
    and the logits. Compare layouts with the same arithmetic."""
    monkeypatch.setattr("bnext.nn.small_map.DENSE_MAX_PIXELS", 0)


WIDTHS_TINY = [32, 64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024] * 2


def to_authors_bnext(key: str) -> str:
    """Our BNext key -> the authors' key, written out rule by rule for this test."""
    key = re.sub(r"^stem\.", "feature.0.", key)
    key = re.sub(r"^blocks\.(\d+)\.", lambda m: f"feature.{int(m.group(1)) + 1}.", key)
    key = key.replace(".se.gate.", ".se.se.")
    return key


def randomized(model: torch.nn.Module, temperature: float) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in model.state_dict().items():
        value = value.clone()
        if key.endswith("temperature"):
            value.fill_(temperature)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
        elif key.endswith("scale"):
            value.uniform_(0, 1)
        elif value.dtype.is_floating_point:
            value.normal_(0, 0.3)
        state[key] = value
    return state


def write_authors_file(path, state):
    torch.save({"epoch": 511, "best_top1_acc": 72.4, "state_dict": {"module." + k: v for k, v in state.items()}}, path)


@pytest.mark.parametrize("elm,rcp", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("temperature", [1.0, 1e-9])
def test_bnext_tiny_authors_layout_matches_reference(tmp_path, elm, rcp, temperature):
    kwargs = dict(num_classes=10, stem_stride=1, elm_attention=elm, recoupling=rcp)
    source = bnext.create_model("bnext_tiny", **kwargs)
    ours = randomized(source, temperature)
    authors = {}
    for key, value in ours.items():
        key = to_authors_bnext(key)
        mixer = "Attention" if elm else "FFN_3x3"
        key = key.replace(".mixer.", f".{mixer}.")
        block = int(key.split(".")[1]) if key.startswith("feature.") else 0
        doubles = block >= 1 and WIDTHS_TINY[block] != WIDTHS_TINY[block - 1]
        key = key.replace(".ffn.0.", ".FFN_1." if doubles else ".FFN.").replace(".ffn.1.", ".FFN_2.")
        authors[key] = value
    path = tmp_path / "authors.pth.tar"
    write_authors_file(path, authors)
    model = bnext.create_model("bnext_tiny", checkpoint=path, **kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = bnext_forward(authors, x, WIDTHS_TINY, 1, elm, rcp)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stem_stride,size", [(1, 32), (2, 64)])
def test_bnext18_authors_layout_matches_reference(tmp_path, stem_stride, size):
    source = bnext.create_model("bnext18", num_classes=10, stem_stride=stem_stride)
    ours = randomized(source, 1e-9)
    authors = {}
    for key, value in ours.items():
        key = key.replace(".mixer.shortcut.", ".Attention.downsample.").replace(".mixer.", ".Attention.")
        key = key.replace(".ffn.", ".FFN.").replace(".se.gate.", ".se.se.")
        authors[key] = value
    path = tmp_path / "bnext18.pth.tar"
    write_authors_file(path, authors)
    model = bnext.create_model("bnext18", num_classes=10, stem_stride=stem_stride, checkpoint=path).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bnext18_forward(authors, x, stem_stride), rtol=1e-4, atol=1e-4)
