"""CIFAR-style residual networks for small images: 28x28 (Fashion-MNIST, 1 channel) and 32x32
(CIFAR, 3 channels). Registered in `kdistill.distill.models.MODELS` as "resnet" and "wrn", so
`build_model({"name": "resnet", ...})` and checkpoints rebuild them without importing this module.

resnet -- He et al. 2016 (arXiv:1512.03385) sec. 4.2: a 3x3 conv stem (conv-BN-ReLU), three
    stages of n basic blocks (conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU) with
    widths (w, 2w, 4w) -- the second and third start with a stride-2 conv -- global average
    pooling and a linear head; depth = 6n + 2. Shortcuts: "pad" is the paper's option A for
    CIFAR (identity, subsampled and zero-padded with new channels where the shape changes, no
    parameters); "projection" is option B (a 1x1 conv + BN where the shape changes, identity
    elsewhere). `stages` sets the three widths directly and `stem` the stem's, which expresses
    the resnet8x4 of the CRD/DKD papers: depth 8, stem 32, stages (64, 128, 256), projections.
wrn -- Zagoruyko & Komodakis 2016 (arXiv:1605.07146): pre-activation basic blocks
    (BN-ReLU-conv3x3, [dropout], BN-ReLU-conv3x3), a 3x3 conv stem of 16 channels, three stages
    of widths (16k, 32k, 64k) for widen factor k, strides 1, 2, 2, depth = 6n + 4; a block whose
    shape changes takes its 1x1 projection shortcut from the pre-activated input (He et al.
    2016b, arXiv:1603.05027); a final BN-ReLU (`final`) before the pooling.

Module names are stable, for feature hooks (FitNets, attention transfer): `stem`, `stage1`,
`stage2`, `stage3` (each an nn.Sequential of blocks; their outputs are the feature maps a
method reads), `pool` (global average pool, (N, C)), `head` (linear, the logits); wrn also has
`final`. Output shapes for an s x s input (`model.feature_shapes()` lists them):

    stem (c0, s, s)   stage1 (c1, s, s)   stage2 (c2, s', s')   stage3 (c3, s'', s'')
    pool (c3,)        head (num_classes,)       s' = ceil(s / 2), s'' = ceil(s' / 2)

so 28 -> 28, 14, 7 and 32 -> 32, 16, 8. The pooling is global, so the nets take any input
size; `image_size` (>= 4) only sets the size `feature_shapes()` describes.

Presets (spec helpers below) -- parameters for 10 classes, and multiply-adds of the conv and
linear layers per image (`kdistill.distill.models.count_flops`; what the KD papers call FLOPs;
BN, ReLU, additions and pooling not counted), measured:

    preset                          1x28x28: params   M mult-adds   3x32x32: params   M mult-adds
    resnet20_spec  (16-32-64, "pad")         269,434         30.82           269,722         40.55
    resnet8x4_spec (32 | 64-128-256)       1,209,834        135.10         1,210,410        177.05
    wrn_16_2_spec  (k = 2)                   691,386         77.18           691,674        101.11
    wrn_40_2_spec  (k = 2)                 2,243,258        250.59         2,243,546        327.60

Training throughput on 1x28x28 batches of 128 (forward + backward + SGD step with momentum,
train mode, median of 5 steps after a warm-up), one thread on a shared 2-core CPU machine that
other jobs were using at the same time; three runs, so indicative only: resnet20 111, 154 and
304 images/s, resnet8x4 55, 70 and 73 images/s.

Everything is out of place (no in-place ReLU or `+=`), so autograd and DDP see no mutated
shared buffers; BN uses its running statistics under `model.eval()` (the trainer runs a
teacher that way).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResNet", "WideResNet", "BasicBlock", "PreActBlock", "GlobalAvgPool",
           "resnet20_spec", "resnet8x4_spec", "wrn_16_2_spec", "wrn_40_2_spec"]

SHORTCUTS = ("pad", "projection")


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _positive_int(name: str, v, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return v


def _blocks_per_stage(depth, extra: int, what: str, examples: str) -> int:
    """n for depth = 6n + extra (two convs a block, three stages), n >= 1."""
    _positive_int("depth", depth, 6 + extra)
    if (depth - extra) % 6:
        raise ValueError(f"{what} has depth 6n + {extra} ({examples}, ...), got {depth}")
    return (depth - extra) // 6


def _halve(s: int) -> int:
    """Spatial size after a 3x3 conv with padding 1 and stride 2 (= the option-A subsampling)."""
    return (s + 1) // 2


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C): the mean over all positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class BasicBlock(nn.Module):
    """He et al. 2016 basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    def __init__(self, cin: int, cout: int, stride: int = 1, shortcut: str = "pad") -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.cin, self.cout = stride, cin, cout
        self.mode = shortcut
        changes = stride != 1 or cin != cout
        self.projection = None
        if changes and shortcut == "projection":
            self.projection = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))
        elif changes and cout < cin:
            raise ValueError(f"the 'pad' shortcut cannot shrink channels ({cin} -> {cout}); "
                             "use shortcut='projection'")

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            return self.projection(x)
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.cout != self.cin:  # option A: the new channels are zeros
            x = F.pad(x, (0, 0, 0, 0, 0, self.cout - self.cin))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Wide-ResNet block: conv2(dropout(relu(bn2(conv1(relu(bn1(x))))))) + shortcut, where the
    shortcut is x, or a 1x1 conv of relu(bn1(x)) when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _conv3x3(cout, cout)
        self.projection = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x))
        skip = x if self.projection is None else self.projection(h)
        out = self.conv1(h)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + skip


def _init(model: nn.Module) -> None:
    """He et al. 2015 normal init for the convs; BN starts as the identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _SmallImageNet(nn.Module):
    """What ResNet and WideResNet share: checks, the three stages' shapes, pool and head."""

    def _check(self, in_channels, num_classes, image_size) -> None:
        _positive_int("in_channels", in_channels)
        _positive_int("num_classes", num_classes, 2)
        _positive_int("image_size", image_size, 4)
        self.in_channels, self.num_classes, self.image_size = (in_channels, num_classes,
                                                               image_size)

    def _add_stages(self, cin: int, n: int, block) -> None:
        """stage1..3: n blocks each, widths self.widths, the first block of stages 2 and 3
        with stride 2; `block(cin, cout, stride)` makes one."""
        for i, (cout, stride) in enumerate(zip(self.widths, (1, 2, 2)), start=1):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, cout, stride if j == 0 else 1))
                cin = cout
            setattr(self, f"stage{i}", nn.Sequential(*blocks))

    def feature_shapes(self, image_size: int | None = None) -> dict[str, tuple[int, ...]]:
        """Per-example output shape of each named module for an s x s input."""
        s = self.image_size if image_size is None else image_size
        c0, (c1, c2, c3) = self.stem_channels, self.widths
        s2 = _halve(s)
        s3 = _halve(s2)
        shapes = {"stem": (c0, s, s), "stage1": (c1, s, s), "stage2": (c2, s2, s2),
                  "stage3": (c3, s3, s3)}
        if hasattr(self, "final"):
            shapes["final"] = (c3, s3, s3)
        shapes.update(pool=(c3,), head=(self.num_classes,))
        return shapes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        if hasattr(self, "final"):
            x = self.final(x)
        return self.head(self.pool(x))


class ResNet(_SmallImageNet):
    """CIFAR ResNet (He et al. 2016 sec. 4.2), depth 6n + 2: resnet20 = depth 20, width 16.

    width: the first stage's channels (stages w, 2w, 4w; default 16), or `stages` = the three
    widths; stem: the stem's channels (default the first stage's). shortcut: "pad" (option A)
    or "projection" (option B).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        depth: int = 20,
        width: int | None = None,
        stages: Sequence[int] | None = None,
        stem: int | None = None,
        shortcut: str = "pad",
    ) -> None:
        super().__init__()
        self._check(in_channels, num_classes, image_size)
        n = _blocks_per_stage(depth, 2, "a CIFAR ResNet", "8, 14, 20, 32, 44, 56, 110")
        if width is not None and stages is not None:
            raise ValueError("give width or stages, not both")
        if stages is None:
            w = _positive_int("width", 16 if width is None else width)
            widths = (w, 2 * w, 4 * w)
        else:
            widths = tuple(stages)
            if len(widths) != 3:
                raise ValueError(f"stages must hold three widths, got {list(stages)}")
            for v in widths:
                _positive_int("each stage width", v)
        c0 = _positive_int("stem", widths[0] if stem is None else stem)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        self.depth, self.blocks_per_stage, self.widths, self.stem_channels = depth, n, widths, c0
        self.stem = nn.Sequential(_conv3x3(in_channels, c0), nn.BatchNorm2d(c0), nn.ReLU())
        self._add_stages(c0, n, lambda cin, cout, stride: BasicBlock(cin, cout, stride,
                                                                     shortcut))
        self.pool = GlobalAvgPool()
        self.head = nn.Linear(widths[2], num_classes)
        _init(self)


class WideResNet(_SmallImageNet):
    """WRN-depth-k (Zagoruyko & Komodakis 2016): depth 6n + 4, widths (16k, 32k, 64k), with
    optional dropout between the two convs of every block."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        depth: int = 16,
        widen_factor: int = 2,
        dropout: float = 0.0,
        base_width: int = 16,
    ) -> None:
        super().__init__()
        self._check(in_channels, num_classes, image_size)
        n = _blocks_per_stage(depth, 4, "a wide ResNet", "10, 16, 22, 28, 40")
        k = _positive_int("widen_factor", widen_factor)
        b = _positive_int("base_width", base_width)
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        widths = (b * k, 2 * b * k, 4 * b * k)
        self.depth, self.blocks_per_stage, self.widths, self.stem_channels = depth, n, widths, b
        self.widen_factor, self.dropout = k, float(dropout)
        self.stem = _conv3x3(in_channels, b)
        self._add_stages(b, n, lambda cin, cout, stride: PreActBlock(cin, cout, stride,
                                                                     dropout))
        self.final = nn.Sequential(nn.BatchNorm2d(widths[2]), nn.ReLU())
        self.pool = GlobalAvgPool()
        self.head = nn.Linear(widths[2], num_classes)
        _init(self)


# ----------------------------------------------------------------------------- presets


def _base(name: str, in_channels: int, num_classes: int, image_size: int) -> dict:
    return {"name": name, "in_channels": in_channels, "num_classes": num_classes,
            "image_size": image_size}


def resnet20_spec(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> dict:
    """ResNet-20 of He et al. 2016 (widths 16, 32, 64; option-A shortcuts)."""
    return {**_base("resnet", in_channels, num_classes, image_size), "depth": 20, "width": 16,
            "shortcut": "pad"}


def resnet8x4_spec(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> dict:
    """The resnet8x4 student of the CRD/DKD papers: depth 8, stem 32, stages (64, 128, 256),
    projection shortcuts."""
    return {**_base("resnet", in_channels, num_classes, image_size), "depth": 8,
            "stages": [64, 128, 256], "stem": 32, "shortcut": "projection"}


def wrn_16_2_spec(in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
                  dropout: float = 0.0) -> dict:
    """WRN-16-2 (Zagoruyko & Komodakis 2016)."""
    return {**_base("wrn", in_channels, num_classes, image_size), "depth": 16,
            "widen_factor": 2, "dropout": dropout}


def wrn_40_2_spec(in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
                  dropout: float = 0.0) -> dict:
    """WRN-40-2 (Zagoruyko & Komodakis 2016)."""
    return {**_base("wrn", in_channels, num_classes, image_size), "depth": 40,
            "widen_factor": 2, "dropout": dropout}
