"""What the params.yaml declaration of a dataset cannot say: its real file names and classes.

``CATALOG`` holds one small ``Layout`` per dataset name of ``params.yaml`` (torchgeo-style: a
registry, not if/elif chains). Each layout says how a tiny fake copy in the real on-disk layout is
generated (``fake``: a ``FAKE_GENERATORS`` name and keyword arguments; the class root, band count and
archive name come from the dataset's params), and which real class names are known (from
DATASETS.md). The data tests are parametrised over it, so every declared dataset is covered.
``missing_data_message`` is the one wording of "this dataset is not here: how to get it".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsdino.config.datasets import DatasetConfig
from rsdino.data.fmow import LABELS as FMOW_LABELS

EUROSAT = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
           "PermanentCrop", "Residential", "River", "SeaLake")
UCMERCED = ("agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral",
            "denseresidential", "forest", "freeway", "golfcourse", "harbor", "intersection",
            "mediumresidential", "mobilehomepark", "overpass", "parkinglot", "river", "runway",
            "sparseresidential", "storagetanks", "tenniscourt")
SIRIWHU = ("agriculture", "commercial", "harbor", "idle_land", "industrial", "meadow", "overpass", "park",
           "pond", "residential", "river", "water")
RSC11 = ("dense_forest", "grassland", "harbor", "high_buildings", "low_buildings", "overpass", "railway",
         "residential_area", "roads", "sparse_forest", "storage_tanks")
AIROUND = ("airport", "bridge", "church", "forest", "lake", "park", "river", "skyscraper", "stadium",
           "statue", "tower")
CVBRCT = ("apartment", "hospital", "house", "industrial", "parking_lot", "religious", "school", "store",
          "vacant_lot")


@dataclass(frozen=True)
class Layout:
    """The real layout of one dataset, as far as a fake copy and the checks need it.

    Attributes:
        fake: name of the ``FAKE_GENERATORS`` entry that writes a tiny copy.
        fake_kwargs: its keyword arguments (a few files of a few pixels).
        classes: the real class names when known (empty: the sorted class folders, or no classes).
        n_classes: the real number of classes (0 when not a classification dataset).
    """

    fake: str
    fake_kwargs: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    n_classes: int = 0


def _scene(pattern: str, classes: tuple[str, ...], n_classes: int | None = None, **extra: Any) -> Layout:
    """A folder-per-class layout; the fake uses the first three real classes."""
    kwargs = {"classes": list(classes[:3]), "pattern": pattern, "n_per_class": 3, "size": 16, **extra}
    return Layout("scene_folders", kwargs, classes, n_classes or len(classes))


CATALOG: dict[str, Layout] = {
    "demo_eurosat": Layout("eurosat_ms", {"n_per_class": 2, "size": 8}, EUROSAT, 10),
    "eurosat_ms": Layout("eurosat_ms", {"n_per_class": 2, "size": 8}, EUROSAT, 10),
    "eurosat_rgb": _scene("{cls}_{n}.jpg", EUROSAT),
    "resisc45": _scene("{lower}_{n:03d}.jpg", ("airplane", "airport", "baseball_diamond"), 45),
    "ucmerced": _scene("{cls}{n:02d}.tif", UCMERCED, first_index=0),
    "whurs19": _scene("{lower}_{n:02d}.jpg", ("Airport", "Beach", "Bridge"), 19),
    "optimal31": _scene("{cls}({n}).jpg", ("airplane", "airport", "baseball_diamond"), 31),
    "mlrsnet": _scene("{cls}_{n:05d}.jpg", ("airplane", "airport", "bare_soil"), 46),
    "airound": _scene("{n}.png", AIROUND),
    "cvbrct": _scene("{n}.png", CVBRCT),
    "rsicb128": _scene("{cls}({n}).tif", ("airport_runway", "avenue", "bridge"), 45,
                       parents={"airport_runway": "transportation", "avenue": "transportation",
                                "bridge": "transportation"}),
    "siriwhu": _scene("{n:04d}.tif", SIRIWHU),
    "rsc11": _scene("{flat} ({n}).tif", RSC11),
    "aid": _scene("{lower}_{n}.jpg", ("Airport", "BareLand", "BaseballField"), 30),
    "demo_seco": Layout("seco", {"n_locations": 4, "n_dates": 3, "size": 12}),
    "seco100k": Layout("seco", {"n_locations": 4, "n_dates": 3, "size": 12}),
    "demo_sen12mscrts": Layout("sen12mscrts", {"n_times": 2, "n_patches": 2, "size": 8}),
    "sen12mscrts": Layout("sen12mscrts", {"n_times": 2, "n_patches": 2, "size": 8}),
    "bigearthnet_s2": Layout("bigearthnet", {"sensor": "s2", "n_patches": 5, "size": 12}, n_classes=19),
    "fmow_rgb": Layout("fmow", {"n_locations": 2, "n_times": 2, "size": 16}, FMOW_LABELS, 63),
    "millionaid_skyscript": Layout("image_lists", {"n_per_folder": 2}),
    "oscd": Layout("oscd", {"size": 300}, ("no_change", "change"), 2),
    "loveda": Layout("segmentation", {"layout": "loveda", "size": 300, "n_images": 1}, n_classes=7),
    "potsdam": Layout("segmentation", {"layout": "potsdam", "size": 300}, n_classes=6),
    "vaihingen": Layout("segmentation", {"layout": "vaihingen", "size": 300}, n_classes=6),
    "bigearthnet_s1": Layout("bigearthnet", {"sensor": "s1", "n_patches": 5, "size": 12}, n_classes=19),
}


def fake_kwargs(name: str, cfg: DatasetConfig) -> dict[str, Any]:
    """Keyword arguments of the fake generator of ``name``, completed from its params declaration.

    Raises:
        KeyError: ``name`` has no catalog entry.
    """
    if name not in CATALOG:
        raise KeyError(f"dataset {name!r} has no entry in rsdino.data.catalog.CATALOG")
    layout = CATALOG[name]
    kwargs = dict(layout.fake_kwargs)
    if layout.fake == "scene_folders":
        kwargs.update(class_root=cfg.class_root, n_bands=len(cfg.bands))
    elif layout.fake == "seco":
        kwargs.update(bands=list(cfg.bands))
    return kwargs


#: ``datasets.<name>.source.generator`` of a dataset whose archive is its catalogued fake copy (the
#: ``fake_data`` scales, e.g. ``mini``); its ``generator_kwargs`` change the catalog's keyword arguments.
CATALOG_GENERATOR = "catalog"


def make_fake(name: str, cfg: DatasetConfig, out_archive: Path, **overrides: Any) -> str:
    """Write the tiny fake copy of dataset ``name`` to ``out_archive`` (format by suffix); return sha256.

    ``overrides`` replace keyword arguments of the catalogued generator (e.g. more images per class).
    """
    import tempfile

    from rsdino.data.fake import FAKE_GENERATORS
    from rsdino.data.fake.common import repack

    generator = FAKE_GENERATORS[CATALOG[name].fake]
    kwargs = {**fake_kwargs(name, cfg), **overrides}
    out_archive = Path(out_archive)
    if CATALOG[name].fake != "eurosat_ms" or out_archive.suffix == ".tar":
        return generator(out_archive, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:  # this generator writes a tar only
        generator(Path(tmp) / "fake.tar", **kwargs)
        return repack(Path(tmp) / "fake.tar", out_archive)


def archive_name(name: str, cfg: DatasetConfig) -> str:
    """File name of the dataset's archive: the real one, or ``<name>.zip`` for manual datasets."""
    return cfg.source.archive_name if cfg.source.url else f"{name}.zip"


def missing_data_message(name: str, cfg: DatasetConfig, folder: Path) -> str:
    """``"<folder> does not exist ...: <how to get the data>"`` for a dataset that is not on disk."""
    if cfg.source.manual:
        how = f"this dataset is downloaded by hand: {cfg.source.manual}"
    elif cfg.source.generator:
        how = (f"run `rsdino make-demo --dataset {name}`, then `rsdino download --dataset {name}` "
               f"(it reads {cfg.source.url})")
    else:
        how = f"run `rsdino download --dataset {name}` (it fetches {cfg.source.url})"
    return f"dataset {name}: folder {folder} does not exist or is empty; {how}"


def require_data(name: str, cfg: DatasetConfig, folder: Path) -> Path:
    """Return ``folder`` if it exists and is not empty, else raise ``FileNotFoundError`` saying how."""
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise FileNotFoundError(missing_data_message(name, cfg, folder))
    return folder
