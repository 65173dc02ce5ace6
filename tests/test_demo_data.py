"""The demo archive named in params.yaml is exactly what the project's generator writes."""

from pathlib import Path

from rsdino.config import load_params
from rsdino.data.fake import FAKE_GENERATORS

ROOT = Path(__file__).resolve().parents[1]


def test_generated_demo_archives_match_their_checksums(tmp_path):
    params = load_params(ROOT / "params.yaml")
    generated = {name: d for name, d in params.datasets.items() if d.source.generator}
    assert generated, "the demo needs at least one generated dataset"
    for name, dataset in generated.items():
        source = dataset.source
        digest = FAKE_GENERATORS[source.generator](tmp_path / f"{name}.tar", **source.generator_kwargs)
        assert digest == source.sha256, (
            f"datasets.{name}.source.sha256 is stale: the generator now writes {digest}")
