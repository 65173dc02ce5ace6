"""Bands matched by name: Sentinel-2 spellings, declared aliases, reordering, selected views."""

import pytest
import torch

from rsdino.data.bands import BandMismatchError, BandSelected, canonical_band, match_bands, select_bands_of

EUROSAT_MS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
SEN12MS_S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def test_sentinel2_names_have_one_spelling():
    assert [canonical_band(b) for b in ("B4", "B04", "b8a", "B8A", "B10", "VV", "R")] == \
        ["B04", "B04", "B8A", "B8A", "B10", "VV", "R"]


def test_bands_are_reordered_by_name_not_position():
    index = match_bands(SEN12MS_S2, EUROSAT_MS)
    assert [EUROSAT_MS[i] for i in index] == SEN12MS_S2
    assert index[8] == 12  # B8A is last in EuroSAT-MS, ninth in SEN12MS-CR-TS


def test_seco_rgb_reads_eurosat_rgb_through_its_aliases_and_oscd_by_spelling():
    rgb_aliases = {"R": "B04", "G": "B03", "B": "B02"}
    assert match_bands(["B4", "B3", "B2"], ["R", "G", "B"], available_aliases=rgb_aliases) == [0, 1, 2]
    assert match_bands(["B4", "B3", "B2"], EUROSAT_MS) == [3, 2, 1]
    # and the reverse: a model trained on EuroSAT-RGB evaluated on 13 bands
    assert match_bands(["R", "G", "B"], EUROSAT_MS, trained_aliases=rgb_aliases) == [3, 2, 1]


def test_a_declared_meaning_wins_over_a_name():
    vaihingen = {"IR": "R", "R": "G", "G": "B"}
    assert match_bands(["R", "G", "B"], ["IR", "R", "G"], available_aliases=vaihingen) == [0, 1, 2]


def test_missing_bands_are_named():
    with pytest.raises(BandMismatchError, match=r"lacks \['B01', 'B05'\]"):
        match_bands(["B01", "B04", "B05"], ["R", "G", "B"], available_aliases={"R": "B04"})


class Items:
    bands = ["B02", "B03", "B04", "B08"]
    stats = {"mean": [2.0, 3.0, 4.0, 8.0], "std": [1.0, 1.0, 1.0, 2.0]}
    classes = ["a", "b"]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        image = torch.arange(4.0).view(4, 1, 1).expand(4, 2, 2) + 10 * i
        return {"image": image, "image2": image + 100, "label": i}


def test_selected_view_reorders_images_stats_and_names():
    view = select_bands_of(Items(), ([2, 1, 0], ["B4", "B3", "B2"]))
    assert isinstance(view, BandSelected) and len(view) == 2 and view.classes == ["a", "b"]
    item = view[1]
    assert item["image"][:, 0, 0].tolist() == [12.0, 11.0, 10.0]
    assert item["image2"][:, 0, 0].tolist() == [112.0, 111.0, 110.0] and item["label"] == 1
    assert view.bands == ["B4", "B3", "B2"] and view.stats["mean"] == [4.0, 3.0, 2.0]
    same = Items()
    assert select_bands_of(same, ([0, 1, 2, 3], same.bands)) is same
