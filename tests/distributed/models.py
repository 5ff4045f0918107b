"""Models and data shared by the distributed tests and the equivalence measurement: LeNet-5 and a small
ResNet of BasicBlocks with batch norm, and one global batch that every rank can rebuild."""
import numpy as np

import tinyconv as tc
from tinyconv import nn
from tinyconv.models import lenet5
from tinyconv.models.resnet import BasicBlock, conv1x1


class SmallResNet(nn.Module):
    """conv-BN-ReLU stem, two BasicBlocks (the second with a strided projection shortcut), pool, fc."""

    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        down = nn.Sequential(conv1x1(width, 2 * width, 2), nn.BatchNorm2d(2 * width))
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, 2 * width, 2, down))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.avgpool(x).reshape(x.shape[0], -1))


def make(name, seed=0):
    tc.manual_seed(seed)
    return lenet5() if name == "lenet5" else SmallResNet()


def global_batch(batch, step, size=32):
    """The global batch of ``step`` (the same on every rank): images ``(batch, 1, size, size)``, labels."""
    rng = np.random.default_rng(1000 + step)
    x = rng.standard_normal((batch, 1, size, size)).astype(np.float32)
    return tc.tensor(x), tc.tensor(rng.integers(0, 10, size=batch))


def shard(t, rank, world):
    n = t.shape[0] // world
    return tc.Tensor(t.data[rank * n:(rank + 1) * n].copy())


def weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}
