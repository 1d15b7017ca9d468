"""Training throughput of the generic torch.func population path against the naive loop.

A model-step is one optimiser step of one network on a mini-batch of `--batch` 8x8 digit images
(forward, backward, Adam). The population side is `FuncPopulation.loss_and_grad` (vmap over stacked
parameters) and the per-network `adam_step`, on the data path `PopulationTrainer` uses
(`ImageArrays.batch`); the naive side trains the same number of reference modules one at a time,
each with its own `torch.optim.Adam`. Both are measured in this run on this machine, after one
warm-up step each, so the ratio is meaningful on a noisy machine where absolute numbers are not.

    python benchmarks/generic_throughput.py                          # about a minute on 2 cores
    python benchmarks/generic_throughput.py --device cuda --sizes 256,4096

The last line is `ratio vs naive loop: <x>x` (at the largest size).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mlc import models, tasks
from mlc.train import ImageArrays, TrainConfig, adam_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _population_rate(
    name: str, m: int, data: ImageArrays, batch: int, steps: int, device: torch.device
) -> float:
    population = models.population(name)
    params = population.init(range(m)).to(device)
    exp_avg, exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
    step = torch.zeros(m, dtype=torch.int64, device=device)
    config = TrainConfig(lr=1e-3, batch_size=batch)
    rows = data.task_rows(["DigitsBadNets"] * m)
    images = torch.randint(0, data.n_train, (steps + 1, m, batch), device=device)
    started = 0.0
    for k in range(steps + 1):
        if k == 1:  # the first step is warm-up
            _sync(device)
            started = time.perf_counter()
        x, y = data.batch(images[k], rows)
        _, grad = population.loss_and_grad(params, x, y)
        adam_step(params, grad, exp_avg, exp_avg_sq, step, config)
    _sync(device)
    return m * steps / (time.perf_counter() - started)


def _naive_rate(
    name: str, m: int, data: ImageArrays, batch: int, steps: int, device: torch.device
) -> float:
    nets = [models.get(name, seed).to(device) for seed in range(m)]
    opts = [torch.optim.Adam(net.parameters(), lr=1e-3) for net in nets]
    row = data.task_rows(["DigitsBadNets"])
    images = torch.randint(0, data.n_train, (steps + 1, m, batch), device=device)
    started = 0.0
    for k in range(steps + 1):
        if k == 1:
            _sync(device)
            started = time.perf_counter()
        for i, (net, opt) in enumerate(zip(nets, opts, strict=True)):
            x, y = data.batch(images[k, i : i + 1], row)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x[0]), y[0]).backward()
            opt.step()
    _sync(device)
    return m * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    families = [n for n in models.names() if n != "mlds-gru"]
    parser.add_argument("--model", default="digits-cnn", choices=families)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="16,64", help="population sizes, comma-separated")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch intra-op threads (both sides)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = tasks.DataSpec(seed=1, n_train=1200, n_val=200)
    shared = tasks.shared_data_for_tasks(spec, ["DigitsBadNets"], {})
    data = ImageArrays.from_shared(shared, ["DigitsBadNets"], device)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{args.model}, {models.layout(args.model).n_params} parameters, batch {args.batch}, {device}, "
          f"{args.threads} thread(s)")
    ratio = 0.0
    for m in sizes:
        naive = _naive_rate(args.model, m, data, args.batch, args.steps, device)
        batched = _population_rate(args.model, m, data, args.batch, args.steps, device)
        ratio = batched / naive
        print(f"M={m}: torch.func population {batched:.0f} model-steps/s, "
              f"naive loop {naive:.0f}: {ratio:.2f}x")
    print(f"ratio vs naive loop: {ratio:.2f}x")


if __name__ == "__main__":
    main()
