"""fix_output_bias: the library form of the bias fix (prior matching on a model's head)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from kdistill.distill.bias import match_prior
from kdistill.distill.bias_fix import fix_output_bias
from kdistill.distill.models import MLP


def _model_and_inputs():
    torch.manual_seed(0)
    model = MLP(6, 4, hidden=(8,))
    with torch.no_grad():
        model.head.bias[2] -= 4.0  # class 2 is rarely predicted
    return model, torch.randn(300, 6)


def _logits_by_hand(model: MLP, x: torch.Tensor) -> np.ndarray:
    w1, b1 = model.hidden_layers[0].weight, model.hidden_layers[0].bias
    with torch.no_grad():
        return (torch.relu(x @ w1.T + b1) @ model.head.weight.T + model.head.bias).double().numpy()


def _mean_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).mean(0)


@pytest.mark.parametrize("classes", [None, [2]])
def test_offsets_match_prior_on_the_models_logits(classes):
    model, x = _model_and_inputs()
    prior = np.array([0.3, 0.2, 0.25, 0.25])
    z = _logits_by_hand(model, x)
    bias_before = model.head.bias.detach().clone()
    offsets = fix_output_bias(model, x, prior, classes=classes)
    assert np.allclose(offsets, match_prior(z, prior, classes=classes), atol=1e-6)
    assert torch.allclose(model.head.bias, bias_before + torch.as_tensor(offsets).float())
    assert model.net[-1] is model.head  # edited in place, both paths see it
    shifted = _mean_softmax(_logits_by_hand(model, x))
    if classes is None:
        assert np.allclose(shifted, prior, atol=1e-4)
    else:
        assert [i for i, v in enumerate(offsets) if v != 0] == [2]
        assert shifted[2] == pytest.approx(0.25, abs=1e-4)
        assert _mean_softmax(z)[2] < 0.1  # the fix did something


def test_head_by_name_and_errors():
    model, x = _model_and_inputs()
    prior = np.full(4, 0.25)
    with pytest.raises(ValueError, match="no module named 'fc'"):
        fix_output_bias(model, x, prior, head="fc")
    with pytest.raises(ValueError, match="'net.2' .*ReLU.* has no bias"):
        fix_output_bias(model, x, prior, head="net.2")
    with pytest.raises(ValueError, match="has 8 entries but the model outputs 4"):
        fix_output_bias(model, x, prior, head="net.1")
    # a layer of the right width that is not the output layer: refused, and left as it was
    net = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 4))
    before = net[0].bias.detach().clone()
    with pytest.raises(ValueError, match="not the output layer"):
        fix_output_bias(net, x, np.array([0.7, 0.1, 0.1, 0.1]), head="0")
    assert torch.equal(net[0].bias, before)
    # the head by its Sequential path gives the default's answer
    named = copy.deepcopy(model)
    assert np.allclose(fix_output_bias(named, x, prior, head="net.3"),
                       fix_output_bias(model, x, prior), atol=1e-9)
    assert torch.equal(named.head.bias, model.head.bias)
    model.head.bias = None
    with pytest.raises(ValueError, match="has no bias"):
        fix_output_bias(model, x, prior)
