"""Property analyses: PCA, two-step PCA maps, mutual nearest neighbours, and the analyses job."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from rsdino.analysis import mutual_nearest_neighbours, principal_components, two_step_pca
from rsdino.analysis.run import run_analyses
from rsdino.config.evaluations import AnalysesEvaluation
from rsdino.evaluate.context import EvaluationContext
from rsdino.tracking import NullTracker

torch.set_num_threads(1)


def test_principal_components_match_the_covariance_eigenvectors():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=gen, dtype=torch.float64) * torch.tensor([5.0, 2.0, 1.0, 0.1])
    scores, directions = principal_components(x, 2)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(x.T))
    top = eigenvectors[:, [3, 2]].T
    torch.testing.assert_close(directions.abs(), top.abs(), atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(scores.var(dim=0), eigenvalues[[3, 2]], atol=1e-8, rtol=1e-6)


def test_two_step_pca_separates_a_foreground_square():
    gen = torch.Generator().manual_seed(0)
    tokens = 0.05 * torch.randn(2, 16, 8, generator=gen)
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[1:3, 1:3] = True
    tokens[:, inside.flatten(), 0] += 5.0  # the square differs along one direction
    tokens[:, inside.flatten(), 1] += torch.linspace(0, 1, 4)  # and varies inside
    foreground, rgb = two_step_pca(tokens, (4, 4))
    assert torch.equal(foreground[0], inside) or torch.equal(foreground[0], ~inside)
    assert rgb.shape == (2, 4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert torch.all(rgb[~foreground] == 0)


def test_mutual_nearest_neighbours_of_a_permutation_are_the_permutation():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(10, 16, generator=gen)
    perm = torch.randperm(10, generator=gen)
    pairs, scores = mutual_nearest_neighbours(a, a[perm] * 3.0)  # scale does not change cosine
    assert len(pairs) == 10 and torch.allclose(scores, torch.ones(10))
    assert torch.equal(perm[pairs[:, 1]], pairs[:, 0])
    # a one-sided nearest neighbour is not mutual
    pairs, _ = mutual_nearest_neighbours(torch.tensor([[1.0, 0.0], [0.9, 0.1]]), torch.tensor([[1.0, 0.0]]))
    assert pairs.tolist() == [[0, 0]]


class Scenes(Dataset):
    classes = ["a", "b"]

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return {"image": torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) + i % 2,
                "label": i % 2, "path": f"{i}.tif"}


def test_analyses_job_writes_and_logs_pngs(tiny_vit_dir, tmp_path):
    settings = AnalysesEvaluation(protocol="analyses", dataset="d", variants=["t"], n_images=4)
    tracker = NullTracker()
    context = EvaluationContext(tiny_vit_dir, datasets={"test": Scenes()}, artifact_dir=tmp_path / "out")
    result = run_analyses(context, settings, tracker)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["attention_0.png", "attention_1.png", "matches.png", "pca.png"]
    assert 0.0 < result["metrics"]["foreground_fraction"] <= 1.0
    assert result["metrics"]["mutual_matches"] >= 1
    assert len(tracker.artifacts) == 4
