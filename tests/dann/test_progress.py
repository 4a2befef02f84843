"""Logs that suit where they go: a bar on a terminal, one line per epoch in a file."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from backflip.dann._progress import Progress, epoch_line

ROW = {"epoch": 1, "loss": 0.5, "train_acc": 0.75, "domain_acc": 0.5, "target_acc": 0.625,
       "source_val_acc": None, "lambd": 0.25, "seconds": 2.0}


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_a_bar_then_the_epoch_line():
    out = Terminal()
    log = Progress(True, stream=out)
    log.start_epoch(0, 2, 0, 50)
    log.update(11, loss="0.500")
    log.end_epoch(ROW, 2)
    text = out.getvalue()
    assert "\r" in text and "epoch 1/2" in text  # tqdm redraws in place
    assert text.rstrip().endswith(epoch_line(ROW, 2))


def test_in_a_file_only_one_line_per_epoch():
    out = io.StringIO()
    log = Progress(True, stream=out)
    for epoch in range(3):
        log.start_epoch(epoch, 3, 0, 50)
        log.update(11, loss="0.500")
        log.end_epoch({**ROW, "epoch": epoch + 1}, 3)
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        epoch_line({**ROW, "epoch": e}, 3) for e in (1, 2, 3)]
    assert epoch_line(ROW, 2) == ("epoch 1/2: loss 0.5000, train acc 0.7500, domain acc 0.5000, "
                                  "target acc 0.6250, λ 0.250, 2.0 s")


def test_other_ranks_and_no_progress_are_silent():
    for log in (Progress(True, main=False, stream=Terminal()), Progress(False, stream=Terminal())):
        log.start_epoch(0, 1, 0, 5)
        log.update(3)
        log.end_epoch(ROW, 1)
        assert log.stream.getvalue() == ""


@pytest.mark.slow
def test_backflip_train_into_a_pipe_writes_one_line_per_epoch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "backflip", "train", "--source", "moons", "--target",
         "moons-rotated", "--epochs", "3", "--min-epoch-steps", "1", "--limit", "64", "--batch-size", "16",
         "--threads", "1", "--out", str(tmp_path), "--no-plots"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stdout and "\r" not in proc.stderr
    epochs = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
