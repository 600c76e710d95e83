import pytest
import torch

from kdistill.distill.models import MLP, SmallCNN, apply_constraints, build_model, count_parameters


def test_mlp_shapes_and_parameter_count():
    m = MLP(784, 10, (1200, 1200))
    assert count_parameters(m) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_max_norm_caps_each_hidden_units_incoming_weights():
    torch.manual_seed(0)
    m = MLP(20, 3, (16, 8), max_norm=0.5)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(10)
    before = m.hidden_layers[0].weight.detach().clone()
    apply_constraints(m)
    for layer in m.hidden_layers:
        norms = layer.weight.detach().norm(dim=1)
        assert float(norms.max()) == pytest.approx(0.5, rel=1e-5)
    # rescaled along the same direction
    w = m.hidden_layers[0].weight
    cos = torch.nn.functional.cosine_similarity(w, before, dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)
    # rows already under the cap are untouched
    small = MLP(4, 2, (3,), max_norm=100.0)
    w0 = small.hidden_layers[0].weight.detach().clone()
    apply_constraints(small)
    assert torch.equal(small.hidden_layers[0].weight, w0)


def test_dropout_only_in_training_mode():
    m = MLP(10, 2, (50,), input_dropout=0.2, hidden_dropout=0.5)
    x = torch.randn(4, 10)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    torch.manual_seed(0)
    a = m(x)
    assert not torch.equal(a, m(x))


def test_cnn_and_registry():
    m = build_model({"name": "cnn", "in_channels": 1, "num_classes": 10, "image_size": 8})
    assert isinstance(m, SmallCNN) and m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown model"):
        build_model({"name": "resnet999"})
    with pytest.raises(ValueError, match="bad arguments"):
        build_model({"name": "mlp", "in_features": 4, "num_classes": 2, "depth": 3})
    with pytest.raises(ValueError, match="dropout"):
        MLP(4, 2, (3,), hidden_dropout=1.0)
