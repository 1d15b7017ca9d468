"""Where a population training step spends its time: the top device kernels of one epoch.

    python benchmarks/profile_train_step.py --device cuda --models 16384 --steps 4
    python benchmarks/profile_train_step.py --device cpu --models 128 --steps 4

Profiles the real trainer (`PopulationTrainer.train`) after a warm-up epoch and prints the kernels
(or CPU ops) with the most self time, so the cost outside the recurrent kernel is visible.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from mlc import tasks, work
from mlc.train import PopulationState, PopulationTrainer, TrainConfig, TrainingArrays, keep_freed_memory


def _every_thread() -> torch._C._profiler._ExperimentalConfig | None:
    """The trainer's CPU threads each train a range of the networks: record them all, where this
    torch can (an experimental option; without it only the calling thread is recorded)."""
    try:
        return torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    except TypeError:
        print("this torch records only the calling thread: run with --threads 1", flush=True)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1, help="CPU: training threads (PyTorch: one)")
    parser.add_argument("--head", choices=["fused", "torch"], default="fused", help="head and loss")
    parser.add_argument(
        "--precision", choices=["ieee", "tf32x3"], default="ieee", help="CUDA: the fused GRU's products"
    )
    args = parser.parse_args()
    work.set_training_threads(args.threads)
    keep_freed_memory()  # as `mlc run` does
    dev = torch.device(args.device)
    names = list(tasks.names())
    spec = tasks.DataSpec(seed=1, n_train=32 * args.steps, n_val=32, length=100)
    data = TrainingArrays.from_shared(tasks.make_shared_data(spec, map(tasks.get, names)), names, dev)
    population = work.population_for("mlds-gru", dev, args.head, args.precision)
    print(f"kernels: {population.kernels}", flush=True)
    seeds = list(range(args.models))
    state = PopulationState.fresh(population.init(seeds)).to(dev)
    trainer = PopulationTrainer(population, TrainConfig(max_epochs=100))
    task_of = [names[i % len(names)] for i in seeds]
    trainer.train(state, seeds, task_of, data, 1)  # warm-up: compilation, allocator
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities, experimental_config=_every_thread()) as prof:
        trainer.train(state, seeds, task_of, data, 1)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
