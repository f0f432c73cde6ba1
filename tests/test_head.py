"""The head on frozen features (--model head), on tiny tensors."""
import torch

from stcore.config import make_config
from stcore.data import TrainData
from stcore.head import fit_head, standardize_on
from stcore.models import EmbeddingHead


def test_a_head_taught_a_lopsided_mix_of_labels_does_not_take_the_other_class_over():
    """Two overlapping classes; the human labels are 500 of class 0 (a bulk accept) and 5 of
    class 1, where the original labeled set had 5 of each. Weighed as they come, the boundary
    moves deep into class 1 (about 10% of it right); capped (balance), most of class 1 stays right."""
    g = torch.Generator().manual_seed(0)
    blob = lambda n, c: torch.randn(n, 2, generator=g) + torch.tensor([2.0 * c - 1, 0.0])
    z_lab = torch.cat([blob(500, 0), blob(5, 1)])
    y_lab = torch.cat([torch.zeros(500, dtype=torch.long), torch.ones(5, dtype=torch.long)])
    z_test, y_test = torch.cat([blob(500, 0), blob(500, 1)]), torch.arange(2).repeat_interleave(500)
    none = torch.zeros(0, 1, 1, 1, dtype=torch.uint8)
    data = TrainData(x_lab=none, y_lab=y_lab, w_lab=torch.ones(505), x_unl=none, p_unl=None, x_test=none,
                     y_test=y_test, classes=["a", "b"], class_prior=torch.tensor([5, 5]))
    data.z_lab, data.z_unl, data.z_test = z_lab, z_lab[:0], z_test
    model = EmbeddingHead(2, 2)
    standardize_on(model, z_test)
    out = fit_head(model, data, make_config(role="teacher", model="head", steps=200, lr=0.1), total=200,
                   callback=lambda *a: False)
    assert out["eval"]["per_class"]["b"] > 0.6, out["eval"]["per_class"]
