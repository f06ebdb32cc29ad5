"""Small models for the core tests; also usable as --arch tests/toy_models.py:NAME."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc2(self.act(self.fc1(x)))))


def mlp() -> MLP:
    torch.manual_seed(0)
    return MLP().eval()


class GatedConv(nn.Conv2d):
    """A Conv2d subclass with a child module of its own: must still count as a Conv2d."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.gate(x.mean())


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            GatedConv(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def convnet() -> ConvNet:
    torch.manual_seed(0)
    return ConvNet().eval()


@dataclass
class Output:
    logits: torch.Tensor
    extra: torch.Tensor


class TwoInputs(nn.Module):
    """Two positional or keyword inputs, a dataclass output."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(4, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> Output:
        h = torch.relu(self.a(left) + self.b(right))
        return Output(self.out(h), h)


def two_inputs() -> TwoInputs:
    torch.manual_seed(0)
    return TwoInputs().eval()


def not_a_module() -> str:
    return "nope"


def raises() -> nn.Module:
    raise RuntimeError("boom in the architecture")


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy of every tensor in the state dict, for bit-identity checks."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


STACK_WIDTH = 1024
STACK_DEPTH = 16


class Stack(nn.Module):
    """16 Linear(1024, 1024) layers, 64 MB of float32: big enough that pruning, quantizing,
    fine-tuning and saving each take a visible while (the process-fault tests kill inside
    each of them)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(STACK_DEPTH):
            layers += [nn.Linear(STACK_WIDTH, STACK_WIDTH), nn.ReLU()]
        self.layers = nn.Sequential(*layers[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def stack() -> Stack:
    torch.manual_seed(0)
    return Stack().eval()


class Detached(nn.Module):
    """A forward that runs under torch.no_grad: no output depends on a weight in the autograd
    graph, so which channels go together cannot be traced (removing channels is refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fc(x)


def detached() -> Detached:
    torch.manual_seed(0)
    return Detached().eval()
