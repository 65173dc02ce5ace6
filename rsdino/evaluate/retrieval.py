"""Content-based image retrieval with frozen features: FAISS indexes, precision@k, mAP and a picture.

Features are L2-normalised, so the inner product an index ranks by is the cosine similarity
(Johnson et al., "Billion-scale similarity search with GPUs", IEEE T-BD 2019, for FAISS). ``flat``
is exact; ``ivfpq`` (inverted lists + product quantisation; Jégou et al., "Product Quantization
for Nearest Neighbor Search", TPAMI 2011) and ``hnsw`` (Malkov & Yashunin, "Efficient and Robust
Approximate Nearest Neighbor Search Using Hierarchical Navigable Small World Graphs", TPAMI 2020)
are approximate, for large collections. A retrieved item is relevant when it has the query's label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import Tensor

IndexKind = Literal["flat", "ivfpq", "hnsw"]


def _as_float32(x: Tensor | np.ndarray, normalize: bool) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    array = np.array(array, dtype=np.float32, order="C", copy=True)
    if array.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {array.shape}")
    if normalize:
        array /= np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
    return array


def _largest_divisor(d: int, at_most: int) -> int:
    return max(m for m in range(1, min(d, at_most) + 1) if d % m == 0)


def build_index(features: Tensor | np.ndarray, kind: IndexKind = "flat", *, normalize: bool = True,
                nlist: int | None = None, m: int | None = None, nbits: int | None = None,
                nprobe: int = 8, hnsw_m: int = 32, ef_search: int = 64, ef_construction: int = 40,
                seed: int = 0) -> Any:
    """A FAISS inner-product index over (L2-normalised) features; ids are the row numbers.

    Args:
        features: (N, D) collection features.
        kind: ``"flat"`` (exact, ``IndexFlatIP``), ``"ivfpq"`` (``IndexIVFPQ`` with an inner-product
            coarse quantiser, trained on ``features``) or ``"hnsw"`` (``IndexHNSWFlat``, inner product).
        normalize: L2-normalise the features first (cosine similarity); ``retrieve`` must be called
            with the same setting.
        nlist: IVF lists; default ``round(sqrt(N))``, at most N // 39 (FAISS's minimum of training
            points per centroid) and at least 1.
        m: PQ sub-quantisers, must divide D; default the largest divisor of D up to 16.
        nbits: bits per PQ code; default 8, lowered so that 2**nbits <= N (k-means needs that many
            training points).
        nprobe: IVF lists visited per query.
        hnsw_m: HNSW neighbours per node.
        ef_search: HNSW search breadth.
        ef_construction: HNSW construction breadth.
        seed: k-means seed of the IVF-PQ training.

    Returns:
        The ``faiss.Index`` with every feature added.
    """
    import faiss  # imported here: only retrieval needs it

    x = _as_float32(features, normalize)
    n, d = x.shape
    if n == 0:
        raise ValueError("no features to index")
    metric = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivfpq":
        nlist = nlist or max(1, min(round(math.sqrt(n)), n // 39))
        m = m or _largest_divisor(d, 16)
        if d % m:
            raise ValueError(f"m = {m} PQ sub-quantisers must divide D = {d}")
        nbits = nbits or max(1, min(8, int(math.log2(n))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quantizer, d, nlist, m, nbits, metric)
        index.cp.seed = seed
        index.pq.cp.seed = seed
        index.train(x)
        index.nprobe = min(nprobe, nlist)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, metric)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    else:
        raise ValueError(f"unknown index kind {kind!r}; choose 'flat', 'ivfpq' or 'hnsw'")
    index.add(x)
    return index


def retrieve(index: Any, queries: Tensor | np.ndarray, k: int, *, normalize: bool = True,
             exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar collection items of every query, most similar first.

    Args:
        index: from ``build_index``.
        queries: (M, D) query features.
        k: neighbours per query (at most the collection size, minus one with ``exclude_self``).
        normalize: L2-normalise the queries (as the collection was in ``build_index``).
        exclude_self: the queries are the collection itself, in order (query i is item i): item i
            is removed from query i's neighbours.

    Returns:
        ``(scores (M, k) float32, ids (M, k) int64)``; an approximate index may return id -1 (and
        score -inf or similar) when it finds fewer than k items.
    """
    q = _as_float32(queries, normalize)
    n = index.ntotal
    k = min(k, n - 1 if exclude_self else n)
    if k <= 0:
        raise ValueError("k must be at least 1 and the collection must hold more than the query")
    scores, ids = index.search(q, k + 1 if exclude_self else k)
    if not exclude_self:
        return scores, ids.astype(np.int64)
    own = ids == np.arange(len(q))[:, None]  # (M, k + 1)
    # Drop the query's own id where found, else the last (least similar) neighbour.
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(len(q)), drop] = False
    return scores[keep].reshape(len(q), k), ids[keep].reshape(len(q), k).astype(np.int64)


def precision_at_k(neighbour_labels: Tensor | np.ndarray, query_labels: Tensor | np.ndarray,
                   k: int) -> float:
    r"""Mean precision at k: the fraction of the first k retrieved items that are relevant.

    .. math:: P@k = \frac{1}{M} \sum_{q=1}^M \frac{1}{k} \sum_{n=1}^k \mathrm{rel}_q(n), \quad
              \mathrm{rel}_q(n) = \mathbb{1}[y_{(q, n)} = y_q],

    where :math:`y_{(q, n)}` is the label of the n-th neighbour of query q (Manning et al.,
    "Introduction to Information Retrieval", 2008, ch. 8).

    Args:
        neighbour_labels: (M, K) labels of the ranked neighbours, K >= k.
        query_labels: (M,) labels of the queries.
        k: cut-off.
    """
    labels = np.asarray(neighbour_labels)
    queries = np.asarray(query_labels)
    if labels.ndim != 2 or labels.shape[0] != queries.shape[0] or not 1 <= k <= labels.shape[1]:
        raise ValueError(f"need (M, K >= k) neighbour labels and (M,) query labels, k = {k}, "
                         f"got {labels.shape} and {queries.shape}")
    return float((labels[:, :k] == queries[:, None]).mean())


def mean_average_precision(neighbour_labels: Tensor | np.ndarray, query_labels: Tensor | np.ndarray,
                           n_relevant: Tensor | np.ndarray | None = None) -> float:
    r"""Mean average precision of ranked retrieval lists.

    For query q with a ranked list of neighbours, :math:`\mathrm{rel}_q(n) \in \{0, 1\}` and
    :math:`P_q(n)` the precision of the first n,

    .. math:: \mathrm{AP}_q = \frac{1}{R_q} \sum_{n} P_q(n) \, \mathrm{rel}_q(n), \qquad
              \mathrm{mAP} = \frac{1}{|Q'|} \sum_{q \in Q'} \mathrm{AP}_q,

    with :math:`R_q` the number of relevant items in the collection (Manning et al., "Introduction
    to Information Retrieval", 2008, ch. 8). The ranked list should be the whole collection (minus
    the query itself when the collection is queried with itself: ``retrieve(...,
    exclude_self=True)``); then :math:`R_q` is the number of relevant items in the list. For a list
    cut at K, pass the collection-wide counts as ``n_relevant``. Queries with :math:`R_q = 0` are
    left out (:math:`Q'`).

    Args:
        neighbour_labels: (M, K) labels of the ranked neighbours.
        query_labels: (M,) labels of the queries.
        n_relevant: (M,) :math:`R_q`; by default the number of relevant items in each list.

    Returns:
        mAP in [0, 1]; NaN when no query has a relevant item.
    """
    labels = np.asarray(neighbour_labels)
    queries = np.asarray(query_labels)
    if labels.ndim != 2 or labels.shape[0] != queries.shape[0]:
        raise ValueError(f"need (M, K) neighbour labels and (M,) query labels, got {labels.shape} "
                         f"and {queries.shape}")
    relevant = (labels == queries[:, None]).astype(np.float64)  # (M, K)
    hits = relevant.cumsum(axis=1)
    precision = hits / np.arange(1, labels.shape[1] + 1)
    total = relevant.sum(axis=1) if n_relevant is None else np.asarray(n_relevant, dtype=np.float64)
    counted = total > 0
    if not counted.any():
        return float("nan")
    ap = (precision * relevant).sum(axis=1)[counted] / total[counted]
    return float(ap.mean())


def evaluate_retrieval(features: Tensor | np.ndarray, labels: Tensor | np.ndarray, *,
                       ks: Sequence[int] = (1, 5, 10), kind: IndexKind = "flat",
                       **index_kw: Any) -> dict[str, float]:
    """Query a collection with each of its own items: precision@k for every k and full-list mAP.

    Every item is a query; its ranked list is the rest of the collection (itself excluded), from an
    index of ``kind`` (for the approximate kinds the "whole" list is what the index returns).

    Returns:
        ``{"precision_at_1": ..., "precision_at_5": ..., "map": ...}`` in [0, 1].
    """
    labels = np.asarray(labels)
    index = build_index(features, kind, **index_kw)
    _, ids = retrieve(index, features, labels.shape[0] - 1, exclude_self=True)
    missing = labels.min(initial=0) - 1  # a label of no item, for ids -1 of an approximate index
    neighbour_labels = np.where(ids >= 0, labels[np.clip(ids, 0, None)], missing)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_relevant = counts[inverse] - 1
    metrics = {f"precision_at_{k}": precision_at_k(neighbour_labels, labels, k) for k in ks}
    metrics["map"] = mean_average_precision(neighbour_labels, labels, n_relevant)
    return metrics


def _rgb(image: Tensor | np.ndarray, rgb_bands: Sequence[int]) -> np.ndarray:
    """(C, H, W) -> (H, W, 3) in [0, 1]: the chosen bands, each stretched from its 2-98 percentiles."""
    array = image.detach().cpu().float().numpy() if isinstance(image, Tensor) else np.asarray(image, float)
    if array.ndim == 2:
        array = array[None]
    bands = [min(b, array.shape[0] - 1) for b in rgb_bands]  # a 1- or 2-band image is shown in grey
    rgb = np.stack([array[b] for b in bands], axis=-1).astype(np.float64)
    low, high = np.percentile(rgb, 2, axis=(0, 1)), np.percentile(rgb, 98, axis=(0, 1))
    return np.clip((rgb - low) / np.where(high > low, high - low, 1.0), 0.0, 1.0)


def plot_retrieval_grid(query_images: Sequence[Tensor] | Tensor,
                        neighbour_images: Sequence[Sequence[Tensor]] | Tensor,
                        out_png: str | Path, *, rgb_bands: Sequence[int] = (0, 1, 2),
                        query_labels: Sequence[int] | None = None,
                        neighbour_labels: Sequence[Sequence[int]] | None = None,
                        title: str | None = None) -> Path:
    """Write a PNG: one row per query, the query then its neighbours, as RGB composites.

    Args:
        query_images: M images (C, H, W) (or a (M, C, H, W) tensor), in any units.
        neighbour_images: M rows of K images (C, H, W) (or a (M, K, C, H, W) tensor), best first.
        out_png: destination, written atomically (matplotlib's Agg canvas).
        rgb_bands: band indices shown as red, green, blue; each is stretched from its 2nd to its
            98th percentile per image.
        query_labels: optional (M,) labels, written above the queries.
        neighbour_labels: optional (M, K) labels; a neighbour with the query's label gets a green
            frame, another a red one.
        title: figure title.

    Returns:
        ``out_png`` as a ``Path``.
    """
    from matplotlib.figure import Figure

    from rsdino.io import atomic_path

    n_rows = len(query_images)
    n_cols = 1 + max((len(row) for row in neighbour_images), default=0)
    if n_rows == 0 or len(neighbour_images) != n_rows:
        raise ValueError("need one row of neighbours per query, and at least one query")
    fig = Figure(figsize=(1.6 * n_cols, 1.6 * n_rows + (0.4 if title else 0)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for row in range(n_rows):
        cells = [query_images[row], *neighbour_images[row]]
        for col in range(n_cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(cells):
                ax.axis("off")
                continue
            ax.imshow(_rgb(cells[col], rgb_bands))
            if col == 0:
                ax.set_title("query" + (f" ({query_labels[row]})" if query_labels is not None else ""),
                             fontsize=8)
                for spine in ax.spines.values():
                    spine.set_linewidth(2)
            elif neighbour_labels is not None:
                label = neighbour_labels[row][col - 1]
                match = query_labels is not None and int(label) == int(query_labels[row])
                ax.set_title(f"#{col} ({label})", fontsize=8)
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:green" if match else "tab:red")
                    spine.set_linewidth(3)
            else:
                ax.set_title(f"#{col}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(out_png)

