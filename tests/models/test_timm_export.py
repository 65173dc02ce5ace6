"""Every model folder loads with ``timm.create_model('local-dir:<folder>', pretrained=True)`` without rsdino.

The demo variants (read from params.yaml, so a new one is covered without a new test) and every
catalogue backbone (shrunk: fewer blocks) are exported as pretraining exports them
(``export_backbone``), then ONE subprocess, in which ``import rsdino`` raises ImportError, loads all
folders with timm alone and writes its features; they must equal rsdino's to 1e-6.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from rsdino.config import load_params
from rsdino.models.backbones import backbone_features, backbone_spec, build_backbone, export_backbone
from rsdino.models.catalog import BACKBONES
from rsdino.models.timm_config import CONVVIT_LOADER_FILE, TIMM_CONFIG_FILE
from rsdino.models.tokens import encode
from rsdino.train.meta_arch import Branch
from rsdino.train.methods import loss_plan

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
DEMO = load_params(PARAMS, "demo")
DEMO_VARIANTS = list(DEMO.selected.variants)
#: Fewer and narrower blocks, same kinds of layers: every kind of key and argument, fast to build.
SHRINK = {"vit": {"depth": 1, "embed_dim": 64, "num_heads": 2}, "cnn": {"layers": [1, 1, 1, 1]},
          "swin": {"depths": [1, 1, 1, 1], "embed_dim": 24}}
CASES = [f"variant:{name}" for name in DEMO_VARIANTS] + [f"backbone:{name}" for name in BACKBONES]
TOLERANCE = 1e-6

# Run by `python -I` (no PYTHONPATH, no script folder on sys.path) with rsdino blocked on the meta path.
CHILD = r'''
import importlib.abc, json, sys

class BlockRsdino(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "rsdino" or name.startswith("rsdino."):
            raise ImportError(f"{name} is blocked: the export must load without rsdino")
        return None

sys.meta_path.insert(0, BlockRsdino())
try:
    import rsdino  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("rsdino was importable")
import timm, torch
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)  # tiny models: threads only add contention on a shared machine
for job in json.loads(open(sys.argv[1]).read()):
    folder = job["folder"]
    if job["loader"]:  # ConvViT: timm plus the folder's own stem file, still no rsdino
        sys.path.insert(0, folder)
        import convvit_stem
        model = convvit_stem.create_model(folder)
        sys.path.remove(folder)
        del sys.modules["convvit_stem"]
    else:
        model = timm.create_model("local-dir:" + folder, pretrained=True)
    model.eval()
    out = {}
    with torch.no_grad():
        for key, x in load_file(job["inputs"]).items():
            out[key + ".features"] = model.forward_features(x).contiguous()
            out[key + ".pooled"] = model(x).contiguous()
    save_file(out, job["outputs"])
assert not any(name == "rsdino" or name.startswith("rsdino.") for name in sys.modules)
'''


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Fill every parameter and BatchNorm statistic with noise, so no zero-initialised tensor hides a bug."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.rand(param.shape, generator=generator) * 0.2 - 0.1)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model.eval()


def _build(case: str) -> tuple[nn.Module, dict, list[int]]:
    """The backbone of ``case``, the ``meta`` pretraining would export it with, and input sizes."""
    kind, name = case.split(":")
    if kind == "variant":  # built from the variant's settings exactly as pretraining builds it
        variant = DEMO.variants[name]
        bands = list(variant.input_bands or DEMO.datasets[variant.pretrain_data].bands)
        branch = Branch(variant, len(bands), 0.0, loss_plan(variant))
        s2_bands = bands[branch.s1_bands:]
        size = variant.crops.global_size
        meta = {**backbone_spec(variant.backbone, len(s2_bands), size, 0.0, **branch.backbone_kwargs),
                "method": variant.method, "variant": name, "branch": "teacher"}
        sizes = [size, variant.crops.local_size]
        model = branch.backbone
    else:
        family = BACKBONES[name].family
        s2_bands, size = [f"B{i:02d}" for i in range(1, 14)], 32
        meta = {**backbone_spec(name, len(s2_bands), size, **SHRINK[family]), "method": "dino",
                "variant": f"test_{name}", "branch": "teacher"}
        model = build_backbone(name, len(s2_bands), size, **SHRINK[family])
        sizes = [size, size // 2] if family == "vit" else [size]
    meta.update(bands=s2_bands, mean=[0.1 * i for i in range(len(s2_bands))],
                std=[1.0 + 0.1 * i for i in range(len(s2_bands))])
    return _randomise(model, seed=len(case)), meta, sizes


@pytest.fixture(scope="module")
def loaded_without_rsdino(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """case -> (rsdino's model, its inputs, the features timm alone computed in the subprocess)."""
    root = tmp_path_factory.mktemp("timm_export")
    jobs, models = [], {}
    generator = torch.Generator().manual_seed(0)
    for i, case in enumerate(CASES):
        model, meta, sizes = _build(case)
        folder = root / f"case{i}"
        export_backbone(model, folder, meta)
        inputs = {f"size{s}": torch.randn(2, meta["in_chans"], s, s, generator=generator) for s in sizes}
        save_file(inputs, str(root / f"in{i}.safetensors"))
        jobs.append({"folder": str(folder), "inputs": str(root / f"in{i}.safetensors"),
                     "outputs": str(root / f"out{i}.safetensors"),
                     "loader": (folder / CONVVIT_LOADER_FILE).is_file()})
        models[case] = (model, inputs, folder)
    (root / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    done = subprocess.run([sys.executable, "-I", "-c", CHILD, str(root / "jobs.json")], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {case: (*models[case], load_file(job["outputs"])) for case, job in zip(CASES, jobs, strict=True)}


def test_cases_cover_every_demo_variant_and_backbone() -> None:
    assert len(DEMO_VARIANTS) >= 6 and set(BACKBONES) <= {case.split(":")[1] for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_folder_loads_in_timm_without_rsdino_with_equal_features(case: str, loaded_without_rsdino) -> None:
    model, inputs, folder, outputs = loaded_without_rsdino[case]
    config = json.loads((folder / TIMM_CONFIG_FILE).read_text(encoding="utf-8"))
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    assert config["num_classes"] == 0 and config["model_args"]["in_chans"] == meta["in_chans"]
    assert config["pretrained_cfg"]["mean"] == meta["mean"] and config["band_names"] == meta["bands"]
    assert ("loader" in config) == bool(meta["timm_kwargs"].get("conv_stem"))
    with torch.no_grad():
        for key, x in inputs.items():
            theirs_tokens, theirs_pooled = outputs[key + ".features"], outputs[key + ".pooled"]
            assert (theirs_pooled - backbone_features(model, x)).abs().max() <= TOLERANCE
            assert (theirs_tokens - model.forward_features(x)).abs().max() <= TOLERANCE
            if isinstance(model, VisionTransformer):  # CLS, registers and patch tokens as rsdino sees them
                ours = encode(model, x)
                n_prefix = model.num_prefix_tokens
                assert (theirs_tokens[:, 0] - ours.cls).abs().max() <= TOLERANCE
                assert (theirs_tokens[:, n_prefix:] - ours.patches).abs().max() <= TOLERANCE
                assert theirs_tokens.shape[1] == n_prefix + ours.patches.shape[1]
