"""Output-layer lookup and hooks (distill/heads.py), and specialists of a non-MLP model."""

import math

import pytest
import torch
from torch import nn

from kdistill.distill.heads import layer_inputs, output_layer, replace_module
from kdistill.distill.models import MLP, SmallCNN
from kdistill.distill.specialist_models import specialist_from_generalist


def test_default_output_layer_is_the_last_linear():
    mlp = MLP(6, 4, hidden=(5, 3))
    assert output_layer(mlp) == ("head", mlp.head)
    cnn = SmallCNN(1, 4, image_size=8, channels=(2, 3), hidden=5)
    name, layer = output_layer(cnn)
    assert name == "classifier.5" and layer is cnn.classifier[5]
    assert output_layer(cnn, "classifier.2")[1] is cnn.classifier[2]
    with pytest.raises(ValueError, match="no module named 'fc'.*classifier.2, classifier.5"):
        output_layer(cnn, "fc")
    with pytest.raises(ValueError, match="no nn.Linear"):
        output_layer(nn.Sequential(nn.Conv2d(1, 2, 1)))


def test_layer_inputs_are_the_features_feeding_the_head():
    torch.manual_seed(0)
    mlp = MLP(6, 4, hidden=(5,), hidden_dropout=0.5).train()
    x = torch.randn(9, 6)
    feats = layer_inputs(mlp, mlp.head, x, batch_size=4)  # several batches, eval mode
    w, b = mlp.hidden_layers[0].weight, mlp.hidden_layers[0].bias
    assert torch.allclose(feats, torch.relu(x @ w.T + b), atol=1e-6)
    assert mlp.training  # mode restored
    assert not mlp.head._forward_pre_hooks  # hook removed


def test_replace_module_changes_every_path():
    mlp = MLP(6, 4, hidden=(5,))
    new = nn.Linear(5, 2)
    assert replace_module(mlp, mlp.head, new) == 2  # `head` and `net[-1]` are the same layer
    assert mlp.head is new and mlp.net[-1] is new
    assert mlp(torch.randn(3, 6)).shape == (3, 2)


def test_cnn_specialist_by_hook():
    torch.manual_seed(0)
    cnn = SmallCNN(1, 5, image_size=8, channels=(2, 3), hidden=6).eval()
    x = torch.randn(40, 1, 8, 8)
    with torch.no_grad():
        z = cnn(x)
        spec = specialist_from_generalist(cnn, [2, 0])
        out = spec(x)
        fitted = specialist_from_generalist(cnn, [0, 1, 2, 3], inputs=x)(x)
    assert out.shape == (40, 3)
    assert torch.allclose(out[:, :2], z[:, [2, 0]], atol=1e-5)
    assert torch.allclose(out[:, 2], z[:, [1, 3, 4]].mean(1) + math.log(3), atol=1e-5)
    # one class outside: the least-squares dustbin reproduces its logit exactly
    assert torch.allclose(fitted[:, -1], z[:, 4], atol=1e-4)
    assert cnn.classifier[5].out_features == 5  # the generalist is untouched


def test_specialist_head_errors():
    mlp = MLP(6, 4, hidden=(5,))
    with pytest.raises(ValueError, match="must be an nn.Linear"):
        specialist_from_generalist(mlp, [0], head="net.2")  # the ReLU
    mlp.head.bias = None
    with pytest.raises(ValueError, match="has no bias"):
        specialist_from_generalist(mlp, [0])
