"""torchrun with 2 CPU processes (gloo) gives the weights of one process, same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from backflip.dann import TrainConfig, load_checkpoint, train

ARGS = ["--source", "moons", "--target", "moons-rotated", "--epochs", "2", "--min-epoch-steps", "1", "--batch-size", "32",
        "--limit", "160", "--threads", "1", "--no-progress", "--eval-limit", "100"]


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "port"), [({}, 29517), ({"target_vat": 1.0}, 29519)],
                         ids=["dann", "dann+vat"])
def test_two_process_ddp_matches_single_process(tmp_path, extra, port):
    # With VAT, each process perturbs its shard with its slice of the global batch's
    # directions, so two processes draw exactly what one does.
    ddp = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(port), "-m", "backflip", "train", *ARGS, *flags,
         "--out", str(ddp)], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train(TrainConfig(source="moons", target="moons-rotated", epochs=2, batch_size=32, min_epoch_steps=1,
                               limit=160, threads=1, progress=False, eval_limit=100,
                               out=str(tmp_path / "one"), **extra))
    a = load_checkpoint(ddp / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    # Stated tolerance: float32 all-reduce sums in another order, 2 epochs of SGD -> 1e-5.
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
    # Metrics are all-reduced: the same epoch loss as one process.
    assert a["history"][-1]["loss"] == pytest.approx(single.history[-1]["loss"], rel=1e-4)


@pytest.mark.slow
def test_two_process_ddp_on_images_in_nhwc(tmp_path, fake_mnist_root):
    # The conv net with NHWC (channels_last) weights and batches under DDP: the same
    # weights as one process (the plain mnist net: no batch statistics to differ).
    args = ["--source", "mnist", "--target", "mnistm", "--source-transform", "rgb",
            "--arch", "mnist", "--epochs", "1", "--min-epoch-steps", "1", "--batch-size", "32", "--limit", "96",
            "--val-fraction", "0", "--threads", "1", "--no-progress", "--eval-limit", "32",
            "--data-root", str(fake_mnist_root)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", "29521", "-m", "backflip", "train", *args,
         "--out", str(tmp_path / "ddp")], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "backflip", "train", *args, "--out",
                             str(tmp_path / "one")], capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    a = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"]
    assert a["features.1.weight"].is_contiguous(memory_format=torch.channels_last)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
