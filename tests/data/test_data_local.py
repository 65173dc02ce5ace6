"""A local source: class folders or a list file, JPEG / PNG / GeoTIFF, resize on import, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from PIL import Image
from pydantic import ValidationError

from rsdino.config.datasets import DatasetConfig, SourceSettings
from rsdino.data.local import LocalSourceError, import_local, list_images
from rsdino.data.readers import read_image


def _tif(path, bands: int = 4, size: int = 20, dtype: str = "uint16") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (np.arange(bands * size * size).reshape(bands, size, size) % 1000).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=bands, dtype=dtype) as dst:
        dst.write(data)


def _jpg(path, size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 120, np.uint8)).save(path)


def test_class_folders_of_geotiffs_resized_keep_dtype_and_bands(tmp_path) -> None:
    for i in range(2):
        _tif(tmp_path / "in" / "urban" / "deep" / f"{i}.tif")
    _tif(tmp_path / "in" / "water" / "0.TIF")
    (tmp_path / "in" / "water" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "stray.tif").write_bytes(b"")  # not in a class folder: ignored
    assert import_local(tmp_path / "in", tmp_path / "out", resize=8) == 3
    image = read_image(tmp_path / "out" / "urban" / "0.tif")
    assert image.shape == (4, 8, 8) and image.dtype == np.uint16
    assert sorted(p.name for p in (tmp_path / "out" / "water").iterdir()) == ["0.TIF"]


def test_a_list_file_names_path_and_class(tmp_path) -> None:
    _jpg(tmp_path / "in" / "a" / "x.jpg")
    _jpg(tmp_path / "in" / "b" / "x.jpg")
    (tmp_path / "in" / "list.txt").write_text("# path class\na/x.jpg farm\n\nb/x.jpg, farm\n")
    assert [label for _, label in list_images(tmp_path / "in", "list.txt")] == ["farm", "farm"]
    import_local(tmp_path / "in", tmp_path / "out", list_file="list.txt")  # copied as they are
    assert sorted(p.name for p in (tmp_path / "out" / "farm").iterdir()) == ["b_x.jpg", "x.jpg"]
    assert Image.open(tmp_path / "out" / "farm" / "x.jpg").size == (20, 20)


@pytest.mark.parametrize(("lines", "message"), [("a/x.jpg\n", "expected '<relative path> <class>'"),
                                                 ("a/missing.jpg farm\n", "missing.jpg not found"),
                                                 ("", "lists no images")])
def test_bad_list_files_name_the_line(tmp_path, lines, message) -> None:
    _jpg(tmp_path / "in" / "a" / "x.jpg")
    (tmp_path / "in" / "list.txt").write_text(lines)
    with pytest.raises(LocalSourceError, match=message):
        import_local(tmp_path / "in", tmp_path / "out", list_file="list.txt")


def test_a_folder_without_class_folders_says_how_to_lay_it_out(tmp_path) -> None:
    _jpg(tmp_path / "in" / "x.jpg")
    with pytest.raises(LocalSourceError, match="no images in class folders"):
        list_images(tmp_path / "in")
    with pytest.raises(LocalSourceError, match="does not exist"):
        list_images(tmp_path / "nowhere")


def test_settings_of_a_local_source() -> None:
    cfg = DatasetConfig(source={"local": "my_images", "resize": 64}, bands=["R", "G", "B"])
    assert ".jpg" in cfg.extensions and ".png" in cfg.extensions and ".tif" in cfg.extensions
    narrowed = DatasetConfig(source={"local": "my_images"}, bands=["R", "G", "B"], extensions=[".png"])
    assert narrowed.extensions == [".png"]
    with pytest.raises(ValidationError, match="not both"):
        SourceSettings(local="x", url="file://y.zip")
    with pytest.raises(ValidationError, match="settings of a local source"):
        SourceSettings(url="file://y.zip", resize=32)
