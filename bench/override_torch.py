"""override_gradients against a plain gradient of the same model, PyTorch.

The same problem as bench/override_jax_pytensor.py and bench/override_tf_keras.py: a
3-layer ReLU MLP (float32, batch 256, 512 -> 1024 -> 1024 -> 10, one torch thread),
the measured step its input gradient ``dL/dx``. Two models, as users write them: with
``nn.ReLU`` modules and with ``F.relu`` calls in ``forward`` (the case module hooks
miss). For each, the step inside ``override_gradients(model, "guided")`` is divided by
the plain gradient of the unchanged model (target <= 1.2) and by the same model written
with ``guided_relu`` by hand, measured side by side (interleaved) in one run; median of
repeats. The block is entered once per step, as a saliency loop does.

    .venv/bin/python bench/override_torch.py [--quick]

Prints a Markdown table and writes bench/out/override_torch.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from _timing import mlp_problem, one_blas_thread, override_rows, write_override_table

one_blas_thread()  # before numpy loads BLAS


def bench_torch(params, x_np, cot_np, repeats: int) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    import backflip.torch as bft

    torch.set_num_threads(1)
    layers = [nn.Linear(w.shape[0], w.shape[1]) for w, _ in params]
    with torch.no_grad():
        for layer, (w, b) in zip(layers, params, strict=True):
            layer.weight.copy_(torch.from_numpy(w.T))
            layer.bias.copy_(torch.from_numpy(b))

    class Functional(nn.Module):
        def __init__(self, act: Callable[[torch.Tensor], torch.Tensor]) -> None:
            super().__init__()
            self.layers, self.act = nn.ModuleList(layers), act

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers[:-1]:
                x = self.act(layer(x))
            return self.layers[-1](x)

    modules = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])
    x0, cot = torch.from_numpy(x_np), torch.from_numpy(cot_np)

    def input_grad(model: nn.Module) -> torch.Tensor:
        x = x0.clone().requires_grad_(True)
        (dx,) = torch.autograd.grad(model(x), x, cot)
        return dx

    def overridden(model: nn.Module) -> Callable[[], object]:
        def step() -> torch.Tensor:
            with bft.override_gradients(model, "guided") as report:
                dx = input_grad(model)
            assert report.complete and report.seen == 2
            return dx

        return step

    by_hand = Functional(bft.guided_relu)
    rows = []
    for mode, model in (("eager, nn.ReLU modules", modules),
                        ("eager, F.relu in forward", Functional(F.relu))):  # fmt: skip
        rows += override_rows("torch", mode, overridden(model), lambda m=model: input_grad(m),
                              lambda: input_grad(by_hand), repeats)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 60 s)")
    args = parser.parse_args(argv)
    repeats = 15 if args.quick else 101
    params, x_np, cot_np = mlp_problem()
    write_override_table("override_torch", repeats, bench_torch(params, x_np, cot_np, repeats), {})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
