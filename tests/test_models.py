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
