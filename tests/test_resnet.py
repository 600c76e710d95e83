"""CIFAR-style ResNets and wide ResNets: names and shapes for hooks, parameter counts and
multiply-adds against hand formulas, eval-mode BN, the registry round trips (checkpoint,
safetensors, ONNX) and a resnet -> resnet FitNets run."""

import pytest
import torch
from torch import nn

from kdistill.distill import methods
from kdistill.distill import resnet as R
from kdistill.distill.checkpoint import load_model
from kdistill.distill.data import ArrayDataset
from kdistill.distill.models import build_model, count_flops, count_parameters
from kdistill.distill.trainer import TrainConfig, train

QUIET = {"log": lambda s: None}
TINY = {"name": "resnet", "in_channels": 1, "num_classes": 10, "image_size": 28, "depth": 8,
        "width": 4}
TINY_WRN = {"name": "wrn", "in_channels": 1, "num_classes": 10, "image_size": 28, "depth": 10,
            "widen_factor": 1, "base_width": 4, "dropout": 0.2}
NAMES = ("stem", "stage1", "stage2", "stage3", "pool", "head")


def tiny(spec=TINY, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model({**spec, **kw})


def shapes_seen(model, x):
    modules = dict(model.named_modules())
    seen, handles = {}, []
    for name in model.feature_shapes():
        handles.append(modules[name].register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape[1:]))))
    model(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("channels,size,spatial", [(1, 28, (28, 14, 7)), (3, 32, (32, 16, 8))])
@pytest.mark.parametrize("spec", [TINY, TINY_WRN], ids=["resnet", "wrn"])
def test_names_and_feature_shapes(spec, channels, size, spatial):
    model = tiny(spec, in_channels=channels, image_size=size).eval()
    modules = dict(model.named_modules())
    assert all(n in modules for n in NAMES)
    for n in ("stage1", "stage2", "stage3"):
        assert isinstance(modules[n], nn.Sequential)
    c0, (c1, c2, c3) = model.stem_channels, model.widths
    s1, s2, s3 = spatial
    want = {"stem": (c0, s1, s1), "stage1": (c1, s1, s1), "stage2": (c2, s2, s2),
            "stage3": (c3, s3, s3), "pool": (c3,), "head": (10,)}
    if spec["name"] == "wrn":
        want["final"] = (c3, s3, s3)
    assert model.feature_shapes() == want
    assert shapes_seen(model, torch.randn(2, channels, size, size)) == want


def test_widths_of_resnet8x4_and_wrn():
    m = build_model(R.resnet8x4_spec(in_channels=1, image_size=28))
    assert (m.stem_channels, m.widths, m.blocks_per_stage) == (32, (64, 128, 256), 1)
    w = build_model(R.wrn_40_2_spec())
    assert (w.stem_channels, w.widths, w.blocks_per_stage) == (16, (32, 64, 128), 6)
    assert len(build_model(R.resnet20_spec()).stage2) == 3


def _conv(cin, cout, k=3):
    return cin * cout * k * k


def _bn(c):
    return 2 * c


def test_parameter_counts_match_hand_formulas():
    # resnet depth 8 (one block a stage), width 4, option-A shortcuts: no shortcut parameters
    blocks = sum(_conv(a, b) + _bn(b) + _conv(b, b) + _bn(b) for a, b in ((4, 4), (4, 8),
                                                                          (8, 16)))
    assert count_parameters(tiny()) == _conv(1, 4) + _bn(4) + blocks + 16 * 10 + 10
    # option B: a 1x1 conv + BN where the shape changes (stages 2 and 3 here)
    proj = _conv(4, 8, 1) + _bn(8) + _conv(8, 16, 1) + _bn(16)
    assert count_parameters(tiny(shortcut="projection")) == count_parameters(tiny()) + proj
    # wrn depth 10 (one block a stage), base 4, k 1: pre-activation BN on the block's input,
    # projections (1x1, no BN) for stages 2 and 3, a final BN
    wblocks = sum(_bn(a) + _conv(a, b) + _bn(b) + _conv(b, b) for a, b in ((4, 4), (4, 8),
                                                                           (8, 16)))
    wproj = _conv(4, 8, 1) + _conv(8, 16, 1)
    assert count_parameters(tiny(TINY_WRN)) == (_conv(1, 4) + wblocks + wproj + _bn(16)
                                                + 16 * 10 + 10)


def test_count_flops_by_hand():
    conv = nn.Conv2d(2, 5, 3, stride=2, padding=1)
    # 5 x 4 x 4 outputs of a 7x7 input, each 2 * 3 * 3 multiply-adds
    assert count_flops(conv, (2, 7, 7)) == 5 * 4 * 4 * 2 * 9
    grouped = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False)
    assert count_flops(grouped, (4, 5, 5)) == 6 * 5 * 5 * 2 * 9
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 7))
    assert count_flops(net, (1, 6, 6)) == 3 * 4 * 4 * 9 + 48 * 7
    # the tiny resnet: stem, two 3x3 convs a block at 28, 14 and 7; the head
    want = (4 * 28 * 28 * 9 * 1 + 2 * 4 * 28 * 28 * 9 * 4
            + 8 * 14 * 14 * 9 * 4 + 8 * 14 * 14 * 9 * 8
            + 16 * 7 * 7 * 9 * 8 + 16 * 7 * 7 * 9 * 16 + 16 * 10)
    model = tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert count_flops(model, (1, 28, 28)) == want
    assert model.training  # mode and BN statistics left as they were
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_presets_parameters_and_flops_as_documented():
    # the numbers in resnet.py's docstring (resnet20: He et al.'s 0.27M; WRN-40-2: 2.2M)
    table = {R.resnet20_spec: (269_434, 30_821_248, 269_722, 40_551_040),
             R.resnet8x4_spec: (1_209_834, 135_101_440, 1_210_410, 177_048_064),
             R.wrn_16_2_spec: (691_386, 77_184_512, 691_674, 101_106_944),
             R.wrn_40_2_spec: (2_243_258, 250_592_768, 2_243_546, 327_599_360)}
    for helper, (p28, f28, p32, f32) in table.items():
        for c, s, params, macs in ((1, 28, p28, f28), (3, 32, p32, f32)):
            model = build_model(helper(in_channels=c, num_classes=10, image_size=s))
            assert count_parameters(model) == params, helper.__name__
            assert count_flops(model, (c, s, s)) == macs, helper.__name__


def test_bad_specs_are_refused():
    cases = [({"depth": 9}, "6n \\+ 2"), ({"stages": [4, 8, 16]}, "not both"),
             ({"width": None, "stages": [4, 8]}, "three widths"), ({"shortcut": "C"}, "shortcut"),
             ({"image_size": 2}, "image_size")]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            build_model({**TINY, **bad})
    with pytest.raises(ValueError, match="cannot shrink"):
        build_model({**TINY, "width": None, "stages": [8, 4, 16]})
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build_model({**TINY_WRN, "depth": 16 + 1})
    with pytest.raises(ValueError, match="dropout"):
        build_model({**TINY_WRN, "dropout": 1.0})


@pytest.mark.parametrize("spec", [TINY, TINY_WRN], ids=["resnet", "wrn"])
def test_eval_mode_uses_running_statistics(spec):
    model = tiny(spec)
    x = torch.randn(8, 1, 28, 28)
    model.train()
    for _ in range(3):
        model(x)  # move the running statistics away from their init
    model.eval()
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with torch.no_grad():
        a, b = model(x), model(x[:1])
    assert torch.allclose(a[:1], b, atol=1e-5)  # per-example: no batch statistics in eval
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())


def random_images(n=64, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(torch.randn(n, 1, 28, 28, generator=g),
                        torch.randint(0, classes, (n,), generator=g), classes, name="noise")


def cfg(**kw):
    return TrainConfig(**{**dict(epochs=1, batch_size=16, lr=0.05, seed=0, progress=False,
                                 device="cpu"), **kw})


def test_checkpoint_and_safetensors_round_trips(tmp_path):
    from kdistill.distill import export

    pytest.importorskip("safetensors")
    spec = {**TINY, "shortcut": "projection"}
    result = train(tiny(spec), random_images(), cfg(), out_dir=tmp_path / "run", model_spec=spec,
                   **QUIET)
    trained = result.model.eval()
    loaded, got_spec = load_model(tmp_path / "run" / "checkpoint.pt")
    assert got_spec == spec and not loaded.training
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        want = trained(x)
        assert torch.equal(loaded(x), want)
    path = tmp_path / "m.safetensors"
    export.export_safetensors(trained, spec, path)
    again, _ = export.load_safetensors(path)
    with torch.no_grad():
        assert torch.equal(again(x), want)


@pytest.mark.parametrize("spec", [TINY, TINY_WRN], ids=["resnet", "wrn"])
def test_onnx_export_matches_torch(spec, tmp_path):
    from kdistill.distill import export

    for m in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(m)
    model = tiny(spec).eval()
    r = export.export_onnx(model, torch.randn(9, 1, 28, 28), tmp_path / "m.onnx", repeats=1)
    assert r.max_abs_diff <= 1e-4


def test_resnet_teacher_to_resnet_student_with_fitnets():
    teacher = tiny(width=8, seed=1).eval()
    student = tiny(seed=2)
    method = methods.get("fitnets", student_layer="stage2", teacher_layer="stage2")
    before = [p.detach().clone() for p in student.parameters()]
    t_before = [p.detach().clone() for p in teacher.parameters()]
    result = train(student, random_images(), cfg(), teacher=teacher, method=method, **QUIET)
    assert len(result.history) == 1
    assert isinstance(method.regressor, nn.Conv2d)
    assert (method.regressor.in_channels, method.regressor.out_channels) == (8, 16)
    assert any(not torch.equal(a, b) for a, b in zip(before, result.model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(t_before, teacher.parameters()))
