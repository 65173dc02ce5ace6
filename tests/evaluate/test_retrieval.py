"""Retrieval: FAISS flat index against brute-force cosine ranking, hand-computed P@k and mAP, plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsdino.evaluate.retrieval import (
    build_index,
    evaluate_retrieval,
    mean_average_precision,
    plot_retrieval_grid,
    precision_at_k,
    retrieve,
)


def brute_cosine_ranking(collection: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = collection / np.linalg.norm(collection, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ c.T.astype(np.float64)
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, order, axis=1), order


def test_flat_index_equals_brute_force_cosine_ranking():
    rng = np.random.default_rng(0)
    collection = rng.normal(size=(50, 12)) * rng.uniform(0.1, 10, size=(50, 1))  # unequal norms
    queries = rng.normal(size=(7, 12))
    index = build_index(torch.from_numpy(collection), "flat")
    scores, ids = retrieve(index, queries, 10)
    expected_scores, expected_ids = brute_cosine_ranking(collection, queries)
    np.testing.assert_array_equal(ids, expected_ids[:, :10])
    np.testing.assert_allclose(scores, expected_scores[:, :10], atol=1e-5)


def test_exclude_self_drops_the_query_from_its_own_list():
    rng = np.random.default_rng(1)
    collection = rng.normal(size=(20, 8)).astype(np.float32)
    index = build_index(collection, "flat")
    _, ids = retrieve(index, collection, 19, exclude_self=True)
    assert ids.shape == (20, 19)
    assert not (ids == np.arange(20)[:, None]).any()
    _, expected = brute_cosine_ranking(collection, collection)
    np.testing.assert_array_equal(ids, expected[:, 1:])  # the first of each brute-force row is itself


def test_precision_at_k_and_map_hand_computed():
    query_labels = np.array([0, 1])
    neighbour_labels = np.array([[0, 1, 0, 1],
                                 [0, 0, 0, 1]])
    # P@1 = (1 + 0) / 2; P@2 = (1/2 + 0) / 2; P@4 = (2/4 + 1/4) / 2.
    assert precision_at_k(neighbour_labels, query_labels, 1) == pytest.approx(0.5)
    assert precision_at_k(neighbour_labels, query_labels, 2) == pytest.approx(0.25)
    assert precision_at_k(neighbour_labels, query_labels, 4) == pytest.approx(0.375)
    # Query 0: relevant at ranks 1 and 3 -> AP = (1/1 + 2/3) / 2 = 5/6.
    # Query 1: relevant at rank 4 only -> AP = (1/4) / 1 = 1/4.  mAP = (5/6 + 1/4) / 2 = 13/24.
    assert mean_average_precision(neighbour_labels, query_labels) == pytest.approx(13 / 24)
    # Lists cut at K = 2 with the collection-wide counts R = (2, 1): AP_0 = 1/2, AP_1 = 0.
    assert mean_average_precision(neighbour_labels[:, :2], query_labels, n_relevant=[2, 1]) == \
        pytest.approx(0.25)
    # A query with no relevant item is left out.
    assert mean_average_precision(np.array([[1, 1], [0, 2]]), np.array([0, 0])) == pytest.approx(1.0)


def test_evaluate_retrieval_on_a_tiny_collection():
    # Items 0, 1 (label 0) and 2, 3 (label 1) on a circle: each item's nearest other item is its pair.
    angles = np.array([0.0, 0.3, 2.0, 2.4])
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 0, 1, 1])
    metrics = evaluate_retrieval(features, labels, ks=(1, 2))
    assert metrics["precision_at_1"] == 1.0
    assert metrics["precision_at_2"] == pytest.approx(0.5)
    assert metrics["map"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_indexes_return_k_neighbours(kind):
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 16)) * 4
    labels = np.repeat(np.arange(4), 100)
    features = (centres[labels] + rng.normal(size=(400, 16))).astype(np.float32)
    index = build_index(features, kind)
    assert index.ntotal == 400
    scores, ids = retrieve(index, features[:10], 5)
    assert ids.shape == (10, 5) and scores.shape == (10, 5)
    assert ((ids >= 0) & (ids < 400)).all()
    # Well-separated clusters: the neighbours are from the query's cluster.
    assert precision_at_k(labels[ids], labels[:10], 5) > 0.9
    assert evaluate_retrieval(features, labels, ks=(5,), kind=kind)["precision_at_5"] > 0.9


def test_unknown_index_kind():
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(np.ones((3, 2)), "lsh")


def test_plot_retrieval_grid_writes_a_png(tmp_path):
    gen = torch.Generator().manual_seed(0)
    queries = torch.rand(2, 13, 16, 16, generator=gen) * 3000  # 13-band reflectances
    neighbours = torch.rand(2, 3, 13, 16, 16, generator=gen) * 3000
    out = plot_retrieval_grid(queries, neighbours, tmp_path / "grid" / "retrieval.png", rgb_bands=(3, 2, 1),
                              query_labels=[0, 1], neighbour_labels=[[0, 1, 0], [1, 1, 0]], title="demo")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["retrieval.png"]  # no temporary file left
