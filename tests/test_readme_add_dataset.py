"""The README's "Add a dataset" example, run as written on a folder of images made here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _section_blocks(title: str) -> list[tuple[str, str]]:
    """The fenced code blocks (language, text) of the README section ``## <title>``."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def _make_images(folder: Path) -> None:
    """Two classes of 8 images, 40 px (so the example's resize to 32 px does something), JPEG and PNG."""
    rng = np.random.default_rng(0)
    for label, colour in (("forest", (30, 110, 40)), ("river", (40, 70, 160))):
        (folder / label).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i}.{'jpg' if i % 2 else 'png'}")


@pytest.mark.slow  # three rsdino commands in fresh processes (about 40 s on an idle 2-core machine)
def test_add_a_dataset_as_the_readme_says(tmp_path) -> None:
    blocks = _section_blocks("Add a dataset")
    settings = [yaml.safe_load(text) for lang, text in blocks if lang == "yaml"]
    commands = [text for lang, text in blocks if lang == "bash"]
    assert settings and commands
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for fragment in settings:  # "add to the datasets: and variants: sections of params.yaml"
        for section, entries in fragment.items():
            params[section].update(entries)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _make_images(tmp_path / "my_images")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "RSDINO_WARM_SOCKET": ""}
    env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_TRACKING")}
    for command in commands:
        result = subprocess.run(["bash", "-e", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    raw = tmp_path / "data" / "raw" / "my_scenes"
    assert sorted(p.name for p in raw.iterdir() if p.is_dir()) == ["forest", "river"]
    images = sorted(raw.rglob("*.*"))
    assert len(images) == 16 and {Image.open(p).size for p in images} == {(32, 32)}
    assert (tmp_path / "models" / "my_dino" / "model.safetensors").is_file()
    log = (tmp_path / "logs" / "pretrain" / "my_dino.log").read_text()
    progress = [line for line in log.splitlines() if "my_dino: step" in line]
    assert [re.search(r"epoch (\d+/\d+)", line).group(1) for line in progress] == ["1/2", "2/2"], log[-3000:]
    assert all(re.search(r"ETA \d+:\d\d:\d\d", line) and "img/s" in line for line in progress)
