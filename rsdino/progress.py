"""Progress of long steps: a tqdm bar on a terminal, plain log lines in a log file.

A job run by Snakemake writes to ``logs/<step>/...log``, not a terminal: a tqdm bar there is either
nothing (disabled) or thousands of carriage returns. So ``Progress`` looks at where stderr goes:

- a terminal: a tqdm bar (``step/total``, rate, ETA) with the latest loss terms as its postfix;
- anything else (a file, a pipe): one plain INFO line through ``logging`` at the end of every epoch
  and, when ``every_s > 0``, whenever ``every_s`` seconds passed since the last line::

      demo_dino_vit: step 40/200 (20%) epoch 2/10 | loss 5.2311 loss_dino 5.2311 | lr 1.20e-04
      | 85.3 img/s | ETA 0:01:52     (one line)

``images/s`` and the ETA are measured over the steps of this process only (a resumed run does not
count the steps it found done): ``rate = images done here / seconds since start``,
``ETA = (total - step) * seconds per step here``.

``configure_logging`` sets Python logging to INFO on stderr (``--quiet``: WARNING), once per command,
from ``rsdino.cli.main``; ``set_interval`` takes ``params.yaml``'s ``progress.every_s``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any, TextIO, TypeVar

log = logging.getLogger("rsdino.progress")
T = TypeVar("T")

#: Seconds between two plain lines inside an epoch (0: one line per epoch only); ``set_interval``.
_EVERY_S = 0.0
#: Metrics shown in a line, in this order, when present (every ``loss_<term>`` after ``loss``).
_RATES = ("lr",)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(quiet: bool = False, stream: TextIO | None = None) -> None:
    """Python logging at INFO to ``stream`` (stderr) when it is a job's log, replacing earlier handlers.

    On a terminal (and with ``quiet``) no records are written: the tqdm bars show the progress there,
    and a failure is the step's one error line, nothing else.

    Only records below WARNING go to the stream: ``rsdino.cli.main`` holds a step's warnings and prints
    them once at its end (or writes them to the debug log beside the traceback of a failure).
    """
    stream = stream or sys.stderr
    level = logging.WARNING if quiet or on_terminal(stream) else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT,
                        datefmt="%Y-%m-%d %H:%M:%S", stream=stream or sys.stderr, force=True)
    for handler in logging.getLogger().handlers:  # warnings are held and printed once by the step
        handler.addFilter(lambda record: record.levelno < logging.WARNING)  # (rsdino.errors.held_warnings)
    for noisy in ("alembic", "urllib3", "matplotlib", "PIL", "git", "filelock", "fsspec", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_interval(every_s: float) -> None:
    """Also write a plain line every ``every_s`` seconds inside an epoch (0: once per epoch)."""
    global _EVERY_S
    if every_s < 0:
        raise ValueError(f"progress.every_s must be >= 0, got {every_s}")
    _EVERY_S = float(every_s)


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stderr) is a terminal."""
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (``D days, H:MM:SS`` beyond a day); ``?`` before anything was measured."""
    if seconds != seconds or seconds == float("inf"):  # NaN or unknown
        return "?"
    return str(timedelta(seconds=round(seconds)))


def format_metrics(metrics: dict[str, float]) -> str:
    """``loss 5.2311 loss_dino 5.2311 | lr 1.2e-04``: the loss terms, then the learning rate."""
    losses = [f"{k} {v:.4f}" for k, v in metrics.items() if k == "loss" or k.startswith("loss_")]
    rates = [f"{k} {metrics[k]:.2e}" for k in _RATES if k in metrics]
    return " | ".join(part for part in (" ".join(losses), " ".join(rates)) if part)


class Progress:
    """Progress of ``total`` steps from ``initial``: a tqdm bar on a terminal, else log lines.

    Args:
        total: Steps of the whole run.
        initial: Steps already done (a resumed run).
        desc: What runs (the variant or evaluation name), the start of every line.
        steps_per_epoch: A line at the end of every epoch (``None``: only at the end).
        items_per_step: Images per step, for ``img/s`` (``None``: steps/s).
        enabled: ``False`` shows nothing.
        every_s: Seconds between lines inside an epoch (default: ``set_interval``'s).
        terminal: Force the bar (``True``) or the lines (``False``); default: ``on_terminal()``.
        clock: ``time.monotonic``; a test passes its own.
        remaining_s: Seconds left, when the run ends by time rather than by ``total`` (a
            wall-clock budget): the ETA shown.
    """

    def __init__(self, total: int, *, initial: int = 0, desc: str = "", steps_per_epoch: int | None = None,
                 items_per_step: int | None = None, enabled: bool = True, every_s: float | None = None,
                 terminal: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 remaining_s: Callable[[], float] | None = None) -> None:
        self.total, self.step, self.start_step, self.desc = total, initial, initial, desc
        self.steps_per_epoch, self.items_per_step = steps_per_epoch, items_per_step
        self.every_s = _EVERY_S if every_s is None else every_s
        self.enabled, self.clock, self.remaining_s = enabled, clock, remaining_s
        self.started = self.last_line = clock()
        self.metrics: dict[str, float] = {}
        self.bar = None
        if enabled and (on_terminal() if terminal is None else terminal):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc)

    def update(self, metrics: dict[str, float] | None = None, n: int = 1) -> None:
        """``n`` more steps done, with the latest step's ``metrics``."""
        self.step += n
        self.metrics = dict(metrics or {})
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            if "loss" in self.metrics:
                self.bar.set_postfix(loss=f"{self.metrics['loss']:.4f}")
            return
        now = self.clock()
        epoch_end = bool(self.steps_per_epoch) and self.step % self.steps_per_epoch == 0
        due = self.every_s > 0 and now - self.last_line >= self.every_s
        if epoch_end or (self.total and self.step >= self.total) or due:
            self.last_line = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """The plain progress line of the current step."""
        now = self.clock() if now is None else now
        done_here, elapsed = self.step - self.start_step, max(now - self.started, 1e-9)
        parts = [f"{self.desc}: step {self.step}/{self.total} ({100 * self.step / max(self.total, 1):.0f}%)"]
        if self.steps_per_epoch:
            epochs = -(-self.total // self.steps_per_epoch)
            parts[0] += f" epoch {-(-self.step // self.steps_per_epoch)}/{epochs}"
        if self.metrics:
            parts.append(format_metrics(self.metrics))
        if done_here > 0:
            unit, per = ("img/s", self.items_per_step) if self.items_per_step else ("steps/s", 1)
            parts.append(f"{done_here * per / elapsed:.1f} {unit}")
            left = (self.remaining_s() if self.remaining_s is not None
                    else (self.total - self.step) * elapsed / done_here)
            parts.append(f"ETA {format_eta(max(left, 0.0))}")
        else:
            parts.append("ETA ?")
        return " | ".join(parts)

    def close(self) -> None:
        """Close the bar (a terminal)."""
        if self.bar is not None:
            self.bar.close()


def track(iterable: Iterable[T], *, desc: str, total: int | None = None, enabled: bool = True,
          **kwargs: Any) -> Iterator[T]:
    """Iterate over ``iterable`` with a ``Progress`` of one step per item.

    Off a terminal it writes a line at the end (and every ``every_s`` seconds), so an evaluation's
    feature extraction or training epochs show in its log too.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = 0
    progress = Progress(total, desc=desc, enabled=enabled, **kwargs)
    try:
        for item in iterable:
            yield item
            progress.update()
    finally:
        progress.close()
