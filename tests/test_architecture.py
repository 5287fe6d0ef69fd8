"""The seams between rooms: no import circle, and export / PTQ / runtime use only the unit's public interface."""

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from bnext.nn import set_temperature
from bnext.nn.binary_conv import BinaryConv2d
from bnext.nn.info_rcp import BinaryUnit, MainBranch, UnitTail

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "bnext"


def import_graph() -> dict[str, set[str]]:
    """bnext module -> the bnext modules it imports (module top or function-local), from the source."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bnext"):
                targets = [owner(f"{node.module}.{alias.name}") for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [owner(alias.name) for alias in node.names if alias.name.startswith("bnext")]
            else:
                continue
            graph[name].update(t for t in targets if t and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def room(module: str) -> str:
    """The folder (or top-level module) a module lives in: bnext.deploy.export -> bnext.deploy."""
    return ".".join(module.split(".")[:2])


def test_no_import_circle_between_rooms():
    rooms: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        if module == "bnext":  # the package facade re-exports from below
            continue
        rooms.setdefault(room(module), set()).update(room(t) for t in targets if room(t) not in (room(module), "bnext"))
    assert find_cycle(rooms) is None, find_cycle(rooms)


def test_no_import_circle_between_modules():
    graph = {m: {t for t in ts if not (m.startswith(t + ".") or t == "bnext")} for m, ts in import_graph().items()}
    assert find_cycle(graph) is None, find_cycle(graph)


def test_runtime_does_not_import_the_exporter():
    for module in ("bnext.deploy.runtime", "bnext.deploy.reference"):
        assert "bnext.deploy.export" not in import_graph()[module]
        assert "bnext.deploy.lowering" not in import_graph()[module]


class RenamedUnit(BinaryUnit):
    """A BinaryUnit whose submodules live under other attribute names; only the public interface is kept."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for old, new in [
            ("move", "shift_in"),
            ("binary_activation", "sign_fn"),
            ("binary_conv", "conv_b"),
            ("norm1", "bn_main"),
            ("activation2", "act_main"),
            ("norm2", "bn_tail"),
        ]:
            module = getattr(self, old)
            delattr(self, old)
            setattr(self, new, module)

    def main_branch_modules(self) -> MainBranch:
        return MainBranch(self.shift_in, self.sign_fn, self.conv_b, self.bn_main, self.act_main)

    def main_branch(self, x):
        return self.act_main(self.bn_main(self.conv_b(self.sign_fn(self.shift_in(x)))))

    def replace_main_branch(self, op):
        self.conv_b = op
        self.shift_in = self.sign_fn = self.bn_main = self.act_main = nn.Identity()

    def replaced_main_branch(self):
        return None if isinstance(self.conv_b, BinaryConv2d) else self.conv_b

    def tail(self) -> UnitTail:
        return UnitTail(
            self.shortcut, None, self.se, self.scale.detach().clamp(0, 1).flatten(), False, self.bn_tail, False
        )

    def forward(self, x):
        y = self.main_branch(x)
        residual = self.shortcut(x)
        return self.bn_tail(self.recouple(residual, y)) + residual


class RenamedNet(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.units = nn.Sequential(RenamedUnit(16, 16, 3), RenamedUnit(16, 16, 1))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(self.units(self.stem(x)).mean((2, 3)))


def trained_renamed_net() -> nn.Module:
    torch.manual_seed(0)
    model = RenamedNet()
    for module in model.modules():  # BatchNorm statistics and scales away from their initial values
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    set_temperature(model, 0.0)
    return model.eval()


def test_renamed_private_attributes_do_not_break_export_and_runtime():
    """Export lowers units through their public interface only: renamed units still become ops that the torch
    reference and the C++ runtime run to the unit's own result."""
    import bnext_runtime

    from bnext.deploy.fileformat import encode_bnx
    from bnext.deploy.graph import INPUT
    from bnext.deploy.lowering import Lowering
    from bnext.deploy.reference import run_graph

    model = trained_renamed_net()
    lowering = Lowering(16)
    value = INPUT
    for index, unit in enumerate(model.units):
        value = lowering.bnext_unit(f"units.{index}", unit, value)
    graph = lowering.graph.graph(value, 16, 16)
    features = torch.randn(4, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.units(features)
    scale = expected.abs().max()
    assert (run_graph(graph, lowering.graph.arrays, features).view_as(expected) - expected).abs().max() <= 1e-4 * scale
    header = {"format": "bnext-packed", "card": {}, "graph": graph}
    native = bnext_runtime.load(encode_bnx(header, lowering.graph.arrays)).run_any(features.numpy())
    native = torch.from_numpy(native).view(4, 16, 16, 16).permute(0, 3, 1, 2)  # NHWC per image
    assert (native - expected).abs().max() <= 1e-4 * scale


def test_renamed_private_attributes_do_not_break_ptq():
    from bnext.quant import calibrate, quantizable_parts, quantize_model
    from bnext.quant.layers import QuantizedMixin

    model = trained_renamed_net()
    parts = quantizable_parts(model)
    assert parts["squeeze"] == ["units.0.se.gate.1", "units.1.se.gate.1"]  # found through the interface
    quantize_model(model, "8/8-8/8-8/8-8/8")
    calibrate(model, [torch.randn(4, 3, 16, 16)])
    assert sum(isinstance(m, QuantizedMixin) for m in model.modules()) == 2 + 2 * 2
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


@pytest.mark.parametrize("name", ["bnext_tiny", "bnext18"])
def test_unit_interface_covers_every_unit(name):
    from bnext.models import create_model

    model = create_model(name, num_classes=4, width_multiplier=0.125, stem_stride=2)
    units = [m for m in model.modules() if isinstance(m, BinaryUnit)]
    assert units
    for unit in units:
        branch = unit.main_branch_modules()
        x = torch.randn(2, branch.conv.in_channels, 8, 8)
        unit.eval()
        with torch.no_grad():
            manual = branch.activation(branch.norm(branch.conv(branch.sign(branch.move(x)))))
            torch.testing.assert_close(unit.main_branch(x), manual)
        assert unit.replaced_main_branch() is None
