"""The one training loop: a task, a technique and settings, run step by step.

It reads top to bottom: build (data, model, ``technique.prepare``,
optimizer), then alternate training windows and evaluation windows until the
step budget is spent. Techniques act only through the hooks documented in
``techniques.base``; this module never names one.

Time and energy are metered around training windows only, with the device
synchronised at each window edge; evaluation has its own window and its own
totals. Windows of either kind shorter than the meter's update period are
counted, since their energy is coarse. Peak memory (``trainables.memory``) covers the whole trial: data,
model, optimizer, training and evaluation. Training FLOPs are counted with ``torch.utils.flop_counter`` on one
real step whenever the structure changes (forward + backward of a kept
batch; optimizer arithmetic is not counted), and added for every kept batch:
``flops`` as executed (dense kernels), ``flops_sparse`` scaled by the layer
densities the technique reports (see ``trainables.flops``). The counter's
Python overhead is some 200 times a small model's step, so the counted step
is metered on its own and left out of the training totals: otherwise a
technique that changes structure five times would be charged for five counts.

A kept step only counts itself towards the FLOPs of the densities it ran
under; they are multiplied out when the densities or the structure change,
at window edges and when ``progress`` is read. A technique that returns the
same mapping object again thus costs one identity check per step, and must
return a new mapping, not change values in place, when its densities change.
The step's loss goes into a running sum read at an evaluation. On an
accelerator the sum stays on the device, so that no step waits for it. On a
CPU there is nothing to wait for, and a Python float is the cheaper sum: in
an A/B on the teacher–student baseline, the tensor add made the loop 2.8 %
slower than reading the loss as a float (some 6 µs a step). Keeping each
step's loss to sum later costs the allocator more than either (callgrind).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch
from torch import nn

from greentune.techniques import LayerDensity, Technique
from greentune.techniques.schedules import cosine_decay

from .checkpoints import restore_location, restore_rng_states, rng_states
from .energy import EnergyMeter
from .flops import StepFlops, measure_step
from .memory import PeakMemory
from .shared_model import save_shared_model
from .tasks import Task, TrainSettings


RECOMPILE_LIMIT_HIT = "Dynamo recompile limit exceeded"  # how Dynamo's counters name the fall back to eager


class TrainingDiverged(RuntimeError):
    """The training loss stopped being a finite number."""


class CompileFailed(RuntimeError):
    """``train.compile`` is on and ``torch.compile`` could not build the step on this machine."""


class Training:
    """One trial's training, resumable from ``save``/``load`` checkpoints.

    It is also the ``Run`` that technique hooks receive (``techniques.base.Run``).
    """

    def __init__(
        self,
        task: Task,
        technique: Technique,
        settings: TrainSettings,
        *,
        model: str | Callable[[], nn.Module],
        seed: int,
        meter: EnergyMeter,
        device: torch.device | str = "cpu",
    ):
        self.task, self.technique, self.settings = task, technique, settings
        self.seed, self.meter, self.device = seed, meter, torch.device(device)
        self.loss_fn = task.loss_fn
        self._compiled: tuple[nn.Module, Callable] | None = None  # (model, its torch.compile), made on first use
        if settings.compile:
            # A worker runs trial after trial, and each one's model adds to the caches of the same code, past
            # whose recompile limit Dynamo runs it eagerly: every compiled trial starts as in a fresh process.
            torch._dynamo.reset()
            self._limit_hits = recompile_limit_hits()
        self.memory = PeakMemory(self.device)  # from here on: data, model, optimizer, training
        # One context, entered around every forward pass (never nested), rather than one made per step.
        self._precision = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if settings.precision == "bf16" else contextlib.nullcontext()
        )

        torch.manual_seed(seed)
        self.train_data, self.held_out = task.splits(self.device, settings.batch_size, seed)
        self.steps_per_epoch = len(self.train_data)
        self.total_steps = (
            max(1, round(settings.epochs * self.steps_per_epoch)) if settings.epochs is not None else settings.steps
        )
        self._statistics_generator = torch.Generator(device=self.device).manual_seed(seed + 1)

        self.step = 0
        self._step_flops: StepFlops | None = None  # before prepare, which may report a structure change
        self._densities: Mapping[nn.Module, LayerDensity] = {}  # those of the kept steps not yet charged
        self._uncharged_steps = 0
        built = model() if callable(model) else task.build_model(model)  # a builder: a model from outside the task
        self.model = built.to(self.device)
        self.model = technique.prepare(self.model, self)
        self._apply_memory_format()
        self.optimizer = self.make_optimizer(self.model)

        self.totals = {
            "energy_j": 0.0, "cpu_energy_j": 0.0, "time_s": 0.0, "eval_energy_j": 0.0, "eval_time_s": 0.0,
            "flops": 0.0, "flops_sparse": 0.0,
        }
        self.kept_steps = 0
        self.short_windows = 0  # training windows shorter than the meter's update period: their energy is coarse
        self.eval_short_windows = 0  # the same for evaluation windows, whose energy is a total of its own
        self.idle_power_w = meter.idle_watts()
        self._uncharged = [0.0, 0.0, 0.0]
        self._loss_on_host = self.device.type == "cpu"
        self._reset_window_loss()

    # --- the Run interface for techniques ---

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        # Fused kernels take one call per step instead of one per parameter,
        # which matters most for the step a skipped batch still takes.
        settings, fused = self.settings, self.device.type in ("cpu", "cuda")
        if settings.optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, fused=fused)
        return torch.optim.SGD(
            model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay, fused=fused
        )

    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train_data.sample(self.settings.batch_size, self._statistics_generator)

    def structure_changed(self) -> None:
        self._charge_flops()  # the steps so far ran on the old structure
        self._step_flops = None
        self._apply_memory_format()

    def _apply_memory_format(self) -> None:
        # In place (same Parameter objects), so it can run before or after an optimizer exists.
        if self.settings.channels_last:
            self.model.to(memory_format=torch.channels_last)

    # --- the loop ---

    def evaluations(self) -> Iterator[dict]:
        """Train window by window, yielding the metrics of each evaluation."""
        while self.step < self.total_steps:
            self._train_window(min(self.total_steps, self.step + self.settings.eval_every))
            yield self._evaluate()

    def _train_window(self, until: int) -> None:
        self.model.train()
        self._uncharged = [0.0, 0.0, 0.0]  # joules, CPU joules and seconds of FLOP counting inside this window
        start_joules, start_cpu, start_time = self._window_edge()
        try:
            while self.step < until:
                self._train_step()
        except torch._dynamo.exc.BackendCompilerFailed as error:  # only with train.compile, at its first step
            raise CompileFailed(
                f"train.compile: torch.compile failed ({str(error).splitlines()[0]}); install what it needs "
                "(a C++ compiler on a CPU, Triton on a GPU) or set train: {compile: false}"
            ) from None
        self._charge_flops()
        end_joules, end_cpu, end_time = self._window_edge()
        self.totals["energy_j"] += end_joules - start_joules - self._uncharged[0]
        self.totals["cpu_energy_j"] += end_cpu - start_cpu - self._uncharged[1]
        self.totals["time_s"] += end_time - start_time - self._uncharged[2]
        self.short_windows += end_time - start_time < self.meter.resolution_s

    def _train_step(self) -> None:
        technique = self.technique
        if technique.keep_batch(self):
            inputs, targets = self.train_data.take(self.train_data.next_indices())
            self.optimizer.zero_grad(set_to_none=True)
            if self._step_flops is None:
                loss = self._counted_forward_backward(inputs, targets)
            else:
                loss = self._loss(inputs, targets)
                loss.backward()
            technique.after_backward(self)
            self._window_loss += loss.detach().item() if self._loss_on_host else loss.detach()
            self._window_batches += 1
            self.kept_steps += 1
            densities = technique.layer_densities(self)
            if densities is not self._densities and (densities or self._densities):  # two empty ones are the same
                self._charge_flops()
                self._densities = densities
            self._uncharged_steps += 1
            take_step = True
        else:
            self.train_data.skip()
            take_step = technique.on_skipped_batch(self)
        if take_step:
            if self.settings.schedule != "constant":
                self._set_scheduled_lr()
            self.optimizer.step()
        self.step += 1
        technique.after_step(self)
        if self.step % self.steps_per_epoch == 0:
            technique.on_epoch_end(self)

    def _charge_flops(self) -> None:
        """Add the FLOPs of the kept steps since the last charge, all run on one structure with one set of densities."""
        steps, self._uncharged_steps = self._uncharged_steps, 0
        if steps:
            sparse = self._step_flops.sparse(self._densities)
            self.totals["flops"] += steps * self._step_flops.dense
            self.totals["flops_sparse"] += sparse if steps == 1 else steps * sparse

    def _counted_forward_backward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        start = self._window_edge()
        loss, self._step_flops = measure_step(self.model, lambda: self._loss(inputs, targets, self.model), len(inputs))
        end = self._window_edge()
        self._uncharged = [total + after - before for total, before, after in zip(self._uncharged, start, end)]
        return loss

    def _loss(self, inputs: torch.Tensor, targets: torch.Tensor, model: Callable | None = None) -> torch.Tensor:
        if self.settings.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with self._precision:
            outputs = (self._training_forward() if model is None else model)(inputs)
            loss = self.loss_fn(outputs, targets)
            extra = self.technique.extra_loss(self, outputs, targets)
            if extra is not None:
                loss = loss + extra
        return loss

    def _training_forward(self) -> Callable:
        """The model, or with ``train.compile`` its ``torch.compile``, made again if the model was replaced.

        Only training steps run compiled. The step that counts FLOPs runs the
        model itself, since the counter must see every op, and so does
        evaluation, which would otherwise compile a second graph for eval
        mode. A technique that changes the model in place makes
        ``torch.compile`` compile again (its guards check the modules).
        """
        if not self.settings.compile:
            return self.model
        if self._compiled is None or self._compiled[0] is not self.model:
            self._compiled = (self.model, torch.compile(self.model))
        return self._compiled[1]

    def _set_scheduled_lr(self) -> None:
        settings = self.settings
        if settings.schedule == "cosine":
            lr = cosine_decay(settings.lr, self.step, self.total_steps)
        else:
            passed = sum(self.step >= round(epoch * self.steps_per_epoch) for epoch in settings.lr_milestones)
            lr = settings.lr * settings.lr_gamma**passed
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _evaluate(self) -> dict:
        window_loss = float(self._window_loss) / self._window_batches if self._window_batches else math.nan
        if self._window_batches and not math.isfinite(window_loss):
            raise TrainingDiverged(f"training loss became {window_loss} before step {self.step}")
        self.model.eval()
        start_joules, _, start_time = self._window_edge()
        with torch.no_grad(), self._precision:
            task_metrics = self.task.evaluate(self.model, self.train_data, self.held_out)
        end_joules, _, end_time = self._window_edge()
        self.totals["eval_energy_j"] += end_joules - start_joules
        self.totals["eval_time_s"] += end_time - start_time
        self.eval_short_windows += end_time - start_time < self.meter.resolution_s
        self._reset_window_loss()
        self.last_metrics = {
            **self.progress(),
            "quality": task_metrics[self.task.quality],
            **task_metrics,
            "loss": window_loss,
            "peak_memory_mb": self.memory.peak_bytes() / 2**20,
            "peak_memory_added_mb": self.memory.added_bytes() / 2**20,
            "memory_source": self.memory.source,
            "params": live_parameters(self.model),
            "params_total": sum(parameter.numel() for parameter in self.model.parameters()),
            **self._inference_flops(),
            **self.technique.metrics(self),
            # Not "done": Ray Tune sets that on every trial's last result,
            # stopped early or not.
            "complete": self.step >= self.total_steps,
        }
        return self.last_metrics

    def _inference_flops(self) -> dict:
        """Test FLOPs per example of the model as it stands, dense and with the technique's sparsity."""
        if self._step_flops is None:  # no batch kept since the structure last changed
            return {"inference_flops": math.nan, "inference_flops_dense": math.nan}
        sparse = self._step_flops.inference(self.technique.layer_densities(self))
        return {"inference_flops": float(sparse), "inference_flops_dense": float(self._step_flops.inference({}))}

    def progress(self) -> dict:
        """Where training stands and what it has cost, valid at any moment."""
        self._charge_flops()
        epochs = self.step / self.steps_per_epoch
        return {
            "step": self.step,
            "trained_fraction": self.step / self.total_steps,  # what schedulers project final costs from
            "epoch": epochs,
            # Totals a technique reports as device tensors are read here, not every step.
            **{name: float(value) for name, value in self.totals.items()},
            "time_per_epoch_s": self.totals["time_s"] / epochs if epochs else 0.0,
            "energy_source": self.meter.source,
            "cpu_energy_source": self.meter.cpu_source,
            "energy_short_windows": self.short_windows,
            "eval_energy_short_windows": self.eval_short_windows,
            "idle_power_w": self.idle_power_w,
            "idle_energy_j": self.idle_power_w * self.totals["time_s"],
            "kept_steps": self.kept_steps,
            "compile_fallback": self.settings.compile and recompile_limit_hits() > self._limit_hits,
        }

    def _window_edge(self) -> tuple[float, float, float]:
        """Joules, the CPU's part of them, and the time, with the device synchronised."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return *self.meter.read(), time.perf_counter()

    def _reset_window_loss(self) -> None:
        self._window_loss = 0.0 if self._loss_on_host else torch.zeros((), device=self.device)
        self._window_batches = 0

    # --- checkpoints ---

    def save(self, path: Path) -> None:
        """Everything needed to continue, with model, technique and optimizer in one graph."""
        torch.save(
            {
                "model": self.model,
                "technique": self.technique,
                "optimizer": self.optimizer,
                # A batch skipped right after resuming may step with the last kept gradients.
                "gradients": [parameter.grad for parameter in self.model.parameters()],
                "step": self.step,
                "kept_steps": self.kept_steps,
                "short_windows": self.short_windows,
                "eval_short_windows": self.eval_short_windows,
                "totals": self.totals,
                "last_metrics": self.last_metrics,
                "data": self.train_data.state_dict(),
                "statistics_generator": self._statistics_generator.get_state(),
                **rng_states(self.device),
            },
            path,
        )

    def export(self, path: Path) -> None:
        """Save the finished network as the technique exports it: its shared form, and a pickle at ``path``.

        This is the network to deploy: gates removed and closed parts sliced
        out, thresholded weights written back, saved on the CPU so that a
        laptop can open what a GPU trained. Beside ``path`` go
        ``model.safetensors`` and ``model.json``, which
        ``greentune.trainables.shared_model.load_shared_model`` opens without
        running code from the files; the pickle at ``path`` needs
        ``torch.load(path, weights_only=False)``, which runs what it names.
        A network the shared form cannot describe gets the pickle only.
        Exporting may change the training's own model (Feather writes back in
        place; both move to the CPU), so it comes after the final checkpoint.
        """
        exported = self.technique.export(self.model).eval().cpu()
        torch.save(exported, path)
        with contextlib.suppress(ValueError):  # a function or hook as part of the network: the pickle only
            save_shared_model(exported, Path(path).parent)

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location=restore_location(self.device), weights_only=False)
        self.model, self.technique, self.optimizer = state["model"], state["technique"], state["optimizer"]
        for parameter, gradient in zip(self.model.parameters(), state["gradients"]):
            parameter.grad = gradient
        self.step, self.kept_steps, self.totals = state["step"], state["kept_steps"], state["totals"]
        self.totals.setdefault("cpu_energy_j", math.nan)  # saved before the CPU part was kept apart: unknown
        self.short_windows = state["short_windows"]
        self.eval_short_windows = state.get("eval_short_windows", 0)  # checkpoints from before it was counted
        self.last_metrics = state["last_metrics"]
        self._uncharged_steps = 0  # what this object trained before is not part of the loaded run
        self.train_data.load_state_dict(state["data"])
        self._statistics_generator.set_state(state["statistics_generator"])
        restore_rng_states(state, self.device)
        self.structure_changed()


def live_parameters(model: nn.Module) -> int:
    """Parameters that are not exactly zero: masked weights do not count."""
    return int(sum(int(torch.count_nonzero(parameter)) for parameter in model.parameters()))


def recompile_limit_hits() -> int:
    """How often Dynamo has hit its recompile limit in this process, after which it ran that code eagerly."""
    from torch._dynamo.utils import counters

    return sum(count for reason, count in counters["unimplemented"].items() if reason.startswith(RECOMPILE_LIMIT_HIT))
