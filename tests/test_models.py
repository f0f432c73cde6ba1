"""Model constructors: logits of the right shape for each input shape."""
import pytest
import torch

from stcore.models import MODELS, build


@pytest.mark.parametrize("c, size, k", [(1, 28, 10), (3, 32, 100), (3, 64, 5)])
def test_cnn_shapes(c, size, k):
    model = build("cnn", c, k, size).eval()
    out = model(torch.rand(2, c, size, size).to(memory_format=torch.channels_last))
    assert out.shape == (2, k)


def test_resnet18_small_shape():
    assert build("resnet18", 1, 10, 28).eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_model_is_an_error():
    with pytest.raises(ValueError, match="unknown model") as e:
        build("vit", 1, 10, 28)
    assert all(name in str(e.value) for name in MODELS)  # the error names every choice


def test_folded_batch_norms_give_the_models_outputs_and_leave_it_as_it_was():
    from stcore.models import folded
    torch.manual_seed(0)
    model = build("cnn", 1, 10, 28)
    with torch.no_grad():  # batch norms with statistics of their own, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.uniform_(0.5, 2)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        want = model.eval()(x)
        fast = folded(model)
        got = fast(x)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 4  # the model keeps its own
    head = build("head", 0, 10, 0, dims=8)
    assert folded(head) is head  # nothing to fold: the model itself
