"""Weighted kNN throughput: rsdino's batched implementation vs a per-query loop, in one process.

    python benchmarks/bench_knn.py [--train 5000] [--test 1000] [--dim 384] [--classes 45]

Prints queries per second of both and their ratio (higher is better for rsdino).
"""

import argparse
import time

import torch

from rsdino.evaluate.knn import weighted_knn


def per_query_baseline(train, train_labels, test, k, temperature, n_classes):
    """The formula written query by query (the baseline)."""
    train = torch.nn.functional.normalize(train, dim=1)
    test = torch.nn.functional.normalize(test, dim=1)
    predictions = []
    for query in test:
        sims = train @ query
        top, index = sims.topk(k)
        scores = torch.zeros(n_classes)
        scores.index_add_(0, train_labels[index], (top / temperature).exp())
        predictions.append(int(scores.argmax()))
    return torch.tensor(predictions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=45)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(args.train, args.dim, generator=generator)
    test = torch.randn(args.test, args.dim, generator=generator)
    train_labels = torch.randint(args.classes, (args.train,), generator=generator)
    test_labels = torch.randint(args.classes, (args.test,), generator=generator)

    start = time.perf_counter()
    ours = weighted_knn(train, train_labels, test, test_labels, ks=(20,), temperature=0.07,
                        n_classes=args.classes)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    baseline = per_query_baseline(train, train_labels, test, 20, 0.07, args.classes)
    t_base = time.perf_counter() - start
    base_top1 = 100.0 * (baseline == test_labels).float().mean().item()
    print(f"rsdino weighted_knn: {args.test / t_ours:10.1f} queries/s (top-1 {ours['top1_k20']:.2f})")
    print(f"per-query baseline : {args.test / t_base:10.1f} queries/s (top-1 {base_top1:.2f})")
    print(f"ratio rsdino/baseline: {t_base / t_ours:.1f}x")


if __name__ == "__main__":
    main()
