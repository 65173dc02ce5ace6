"""Progress off a terminal: a line per epoch (and every N seconds): step, losses, lr, rate, ETA."""

from __future__ import annotations

import logging

import pytest

from rsdino import progress
from rsdino.progress import Progress, format_eta, track


class Clock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rsdino.progress"]


def test_one_line_per_epoch_with_losses_lr_rate_and_eta(caplog) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    bar = Progress(6, desc="v", steps_per_epoch=3, items_per_step=8, terminal=False, every_s=0, clock=clock)
    for _ in range(6):
        clock.now += 2.0  # 2 s a step of 8 images: 4 img/s
        bar.update({"loss": 5.25, "loss_dino": 5.25, "lr": 1e-4, "wd": 0.04})
    lines = _lines(caplog)
    assert len(lines) == 2
    assert lines[0] == ("v: step 3/6 (50%) epoch 1/2 | loss 5.2500 loss_dino 5.2500 | lr 1.00e-04 "
                        "| 4.0 img/s | ETA 0:00:06")
    assert lines[1].startswith("v: step 6/6 (100%) epoch 2/2") and lines[1].endswith("ETA 0:00:00")


def test_a_resumed_run_measures_only_its_own_steps(caplog) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    bar = Progress(10, initial=5, desc="v", steps_per_epoch=5, terminal=False, every_s=0, clock=clock)
    for _ in range(5):
        clock.now += 10.0
        bar.update({"loss": 1.0})
    (line,) = _lines(caplog)
    assert "step 10/10" in line and "0.1 steps/s" in line


def test_a_time_budget_shows_the_time_left_as_eta(caplog) -> None:
    caplog.set_level(logging.INFO)
    bar = Progress(100, desc="v", steps_per_epoch=1, terminal=False, every_s=0, clock=Clock(),
                   remaining_s=lambda: 90.0)
    bar.update({"loss": 1.0})
    assert _lines(caplog)[0].endswith("ETA 0:01:30")


def test_every_n_seconds_inside_an_epoch(caplog) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    bar = Progress(100, desc="v", steps_per_epoch=100, terminal=False, every_s=30, clock=clock)
    for _ in range(99):
        clock.now += 1.0
        bar.update({"loss": 1.0})
    assert [int(line.split("step ")[1].split("/")[0]) for line in _lines(caplog)] == [30, 60, 90]


def test_disabled_and_terminal_write_no_lines(caplog) -> None:
    caplog.set_level(logging.INFO)
    Progress(2, desc="off", steps_per_epoch=1, enabled=False, terminal=False).update({"loss": 1.0})
    bar = Progress(2, desc="tty", steps_per_epoch=1, terminal=True)
    bar.update({"loss": 1.0})
    bar.close()
    assert _lines(caplog) == []


def test_track_yields_every_item_and_reports_at_the_end(caplog) -> None:
    caplog.set_level(logging.INFO)
    assert list(track(range(4), desc="features", terminal=False)) == [0, 1, 2, 3]
    (line,) = _lines(caplog)
    assert line.startswith("features: step 4/4")


def test_eta_format_and_interval_setting() -> None:
    assert format_eta(3725) == "1:02:05" and format_eta(float("nan")) == "?"
    with pytest.raises(ValueError, match="every_s"):
        progress.set_interval(-1)


def test_configured_logging_goes_to_stderr_at_info(capsys) -> None:
    progress.configure_logging()
    logging.getLogger("rsdino.test").info("configured")
    assert "INFO rsdino.test: configured" in capsys.readouterr().err
    progress.configure_logging(quiet=True)
    logging.getLogger("rsdino.test").info("hidden")
    assert "hidden" not in capsys.readouterr().err
    progress.configure_logging()


@pytest.mark.parametrize("flags", [[], ["--quiet"]])
def test_main_configures_logging(monkeypatch, tmp_path, flags) -> None:
    from rsdino.cli import main

    calls = []
    monkeypatch.setattr(progress, "configure_logging", lambda quiet=False: calls.append(quiet))
    code = main(["prepare", "--params", str(tmp_path / "missing.yaml"), "--dataset", "d",
                 "--raw", str(tmp_path), "--out", str(tmp_path / "out"), *flags])
    assert code == 2 and calls == [bool(flags)]
