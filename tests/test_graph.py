"""Label propagation over a pixel k-NN graph, on tiny tensors."""
import torch

from stcore import graph as G


def two_blobs(n=30, seed=0):
    """n images of two kinds: bright top half (class 0) or bright bottom half (class 1)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randint(0, 50, (n, 1, 8, 8), dtype=torch.uint8, generator=g)
    x[y == 0, :, :4] += 200
    x[y == 1, :, 4:] += 200
    return x, y


def blob_graph(x):
    # the blobs differ along one direction only: whitening many components would drown it in noise
    return G.build(*G.knn(G.embed(x, dims=2), k=5))


def test_embed_gives_unit_rows_of_at_most_dims_columns():
    x, _ = two_blobs()
    z = G.embed(x, dims=5)
    assert z.shape == (30, 5)
    assert torch.allclose(z.norm(dim=1), torch.ones(30), atol=1e-5)
    zc = G.embed(x, dims=5, chunk=7)  # chunking changes no similarity (a component may flip sign)
    assert torch.allclose(zc @ zc.T, z @ z.T, atol=1e-4)
    assert torch.equal(G.embed(x, dims=5), z)  # repeatable


def test_knn_excludes_the_point_itself_and_finds_its_own_kind():
    x, y = two_blobs()
    idx, sim = G.knn(G.embed(x, dims=2), k=4, chunk=7)  # several chunks
    assert idx.shape == sim.shape == (30, 4)
    assert not (idx == torch.arange(30).unsqueeze(1)).any()
    assert (y[idx] == y.unsqueeze(1)).float().mean() > 0.9
    assert (sim[:, :-1] >= sim[:, 1:]).all()  # nearest first


def test_build_is_symmetric_and_normalized():
    idx = torch.tensor([[1], [0], [1]])
    sim = torch.tensor([[1.0], [1.0], [0.5]])
    m = G.build(idx, sim, power=1).matrix.to_dense()
    assert torch.allclose(m, m.T)
    # edges 0-1 (weight 1 + 1) and 1-2 (0.5); degrees 2, 2.5, 0.5
    assert torch.isclose(m[0, 1], torch.tensor(2 / (2 * 2.5) ** 0.5))
    assert torch.isclose(m[2, 1], torch.tensor(0.5 / (0.5 * 2.5) ** 0.5))
    assert m[0, 2] == 0


def test_propagate_spreads_one_seed_per_class_over_its_cluster():
    x, y = two_blobs()
    g = blob_graph(x)
    seeds = torch.zeros(30, 2)
    seeds[0, 0] = seeds[1, 1] = 1.0  # items 0 and 1 are labeled
    out = G.propagate(g, seeds, torch.zeros(30, 2))
    assert torch.allclose(out.sum(1), torch.ones(30))
    assert (out.argmax(1) == y).all()


def test_propagate_corrects_a_prior_that_its_neighbours_disagree_with_and_unreached_rows_are_uniform():
    x, y = two_blobs()
    g = blob_graph(x)
    seeds = torch.zeros(30, 2)
    seeds[:4] = torch.nn.functional.one_hot(y[:4], 2).float()
    guess = y.clone()
    guess[10:16] = 1 - y[10:16]  # a teacher that is wrong on six items
    prior = 0.2 * torch.nn.functional.one_hot(guess, 2).float()
    assert (G.propagate(g, seeds, prior).argmax(1) == y).all()
    lonely = G.Graph(torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (3, 3),
                                             check_invariants=False))
    assert torch.allclose(G.propagate(lonely, torch.zeros(3, 2), torch.zeros(3, 2)), torch.full((3, 2), 0.5))


def test_pixel_graph_refuses_too_few_images_and_goes_approximate_past_the_exact_size(monkeypatch):
    x, y = two_blobs()
    exact = G.pixel_graph(x)
    assert exact.size == 30 and G.pixel_graph(x[:2]) is None
    monkeypatch.setattr(G, "EXACT_MAX", 10)
    assert G.pixel_graph(x).size == 30  # past the exact search's size: faiss's index, no cap
    approx = G.feature_graph(G.embed(x, dims=2))  # two blobs, kept apart by two components
    seeds = torch.zeros(30, 2)
    seeds[[0, 1], y[[0, 1]]] = 1
    assert (G.propagate(approx, seeds, torch.zeros(30, 2)).argmax(1) == y).all()


def test_approximate_neighbours_find_most_exact_ones():
    """On 3,000 points in 16 clusters, recall@10 against the exact search is high, each row's
    neighbours exclude itself, and similarities come sorted, as knn's do."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(16, 32, generator=g)
    z = torch.nn.functional.normalize(centres[torch.arange(3000) % 16] + 0.3 * torch.randn(3000, 32, generator=g), dim=1)
    exact_idx, _ = G.knn(z, k=10, approximate=False)
    idx, sim = G.knn(z, k=10, approximate=True)
    assert idx.shape == sim.shape == (3000, 10)
    assert not (idx == torch.arange(3000)[:, None]).any()
    assert (sim[:, :-1] >= sim[:, 1:] - 1e-5).all()
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(idx, exact_idx)) / idx.numel()
    assert recall > 0.8, recall


def test_large_images_are_pooled_to_max_side_before_the_embedding():
    x, _ = two_blobs()
    up = lambda k: x.repeat_interleave(k, 2).repeat_interleave(k, 3)
    big, at_max = G.embed(up(8), dims=3), G.embed(up(4), dims=3)  # 64 px pools down to the same 32 px
    assert torch.allclose(big @ big.T, at_max @ at_max.T, atol=1e-4)


def test_a_graph_cut_from_the_lists_of_every_row_is_the_graph_of_its_nodes():
    x, _ = two_blobs(40)
    z = G.embed(x, dims=2)
    idx, sim = G.knn(z, k=5)
    every = torch.arange(40)
    assert torch.allclose(G.restricted(idx, sim, every).matrix.to_dense(), G.build(idx, sim).matrix.to_dense())
    # a part of the rows, in another order: a node links only to its row's neighbours among the nodes
    nodes = torch.tensor([7, 3, 12, 30, 31, 5, 8, 20])
    m = G.restricted(idx, sim, nodes, power=1).matrix.to_dense()
    assert torch.allclose(m, m.T)
    for a in range(len(nodes)):
        for b in range(len(nodes)):
            linked = int(nodes[b]) in idx[nodes[a]].tolist() or int(nodes[a]) in idx[nodes[b]].tolist()
            assert bool(m[a, b] > 0) == linked, (a, b)


def test_a_row_that_is_two_nodes_links_its_second_node_to_its_first():
    x, _ = two_blobs(20)
    idx, sim = G.knn(G.embed(x, dims=2), k=3)
    nodes = torch.tensor([4, 9, 4, 11])  # row 4 is a seed and a pool node
    m = G.restricted(idx, sim, nodes, power=1).matrix.to_dense()
    assert m[2, 0] > 0 and m[0, 2] > 0
    # the second node links to its row's neighbours as the first does; neighbours link to the first
    assert (m[2, [1, 3]] > 0).tolist() == [9 in idx[4].tolist(), 11 in idx[4].tolist()]


def test_the_folds_spread_in_one_pass_as_they_would_one_by_one():
    x, y = two_blobs(40)
    g = blob_graph(x)
    probs = torch.softmax(torch.randn(30, 2, generator=torch.Generator().manual_seed(1)), 1)
    labels, weights = y[:10], torch.rand(10) + 0.5
    target = torch.tensor([0.4, 0.6])
    got = G.out_of_fold(g, 10, labels, weights, 2, probs, 0.2, target)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    prior = torch.zeros(40, 2)
    prior[10:] = 0.2 * probs
    for part in range(5):
        out, kept = order[part::5], torch.cat([order[j::5] for j in range(5) if j != part])
        seeds = torch.zeros(40, 2)
        seeds[kept, labels[kept]] = weights[kept]
        f = G.propagate(g, seeds, prior)
        want = G.align_distribution(f[out], f[10:].mean(0), target)
        assert torch.allclose(got[out], want, atol=1e-5), part
