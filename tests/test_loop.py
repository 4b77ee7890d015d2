"""The training loop's hook points, checkpoints, FLOPs and divergence handling."""

from __future__ import annotations

import functools

import pytest
import torch

from greentune import techniques
from greentune.techniques import Technique
from greentune.trainables.checkpoints import restore_location
from greentune.trainables.energy import EnergyMeter
from greentune.trainables.loop import Training, TrainingDiverged, live_parameters
from greentune.trainables.trial import CheckpointPolicy, check_trial_config

from helpers import make_training, run_to_end


def selection(selectivity, on_skip="last"):
    return techniques.create(["data_selection"], {"data_selection": {"selectivity": selectivity, "on_skip": on_skip}})


def parameters(training: Training) -> list[torch.Tensor]:
    return [parameter.detach().clone() for parameter in training.model.parameters()]


class Never(Technique):
    """Skips every batch."""

    name = "test_never"

    def keep_batch(self, run):
        return False


def count_training_forwards(training: Training) -> list[int]:
    calls = [0]

    def hook(module, inputs, output):
        if module.training:
            calls[0] += 1

    training.model.register_forward_hook(hook)
    return calls


def test_a_skipped_batch_runs_no_forward_and_no_backward():
    training = make_training(Never(), steps=30, eval_every=30)
    forwards = count_training_forwards(training)
    backwards = [0]
    for parameter in training.model.parameters():
        parameter.register_hook(lambda grad: backwards.__setitem__(0, backwards[0] + 1))
    metrics = run_to_end(training)[-1]
    assert forwards[0] == 0 and backwards[0] == 0
    assert metrics["kept_steps"] == 0 and metrics["flops"] == 0


def test_data_selection_skips_the_forward_pass_of_skipped_batches():
    training = make_training(selection(0.5), steps=200, eval_every=200)
    forwards = count_training_forwards(training)
    metrics = run_to_end(training)[-1]
    assert forwards[0] == metrics["kept_steps"]
    assert 60 < metrics["kept_steps"] < 140  # about half of 200


def test_selectivity_one_equals_the_baseline_for_the_same_seed():
    baseline, selected = make_training(seed=3), make_training(selection(1.0), seed=3)
    baseline_metrics, selected_metrics = run_to_end(baseline)[-1], run_to_end(selected)[-1]
    for a, b in zip(parameters(baseline), parameters(selected)):
        assert torch.equal(a, b)
    assert baseline_metrics["quality"] == selected_metrics["quality"]


def test_a_skipped_batch_steps_with_the_last_kept_gradients():
    training = make_training(selection(0.5), steps=1)
    training.technique.keep_batch = lambda run: run.step == 0  # keep the first, skip the rest
    training._train_step()
    gradients = [parameter.grad.clone() for parameter in training.model.parameters()]
    before = parameters(training)
    training._train_step()
    for old, new, gradient in zip(before, parameters(training), gradients):
        torch.testing.assert_close(new, old - training.settings.lr * gradient)


@pytest.mark.parametrize("on_skip, moves", [("zero", False), ("none", False), ("last", True)])
def test_what_the_optimizer_does_on_a_skipped_batch(on_skip, moves):
    training = make_training(selection(0.5, on_skip), steps=1)
    training.technique.keep_batch = lambda run: run.step == 0
    steps = [0]
    training._train_step()
    training.optimizer.register_step_post_hook(lambda *args: steps.__setitem__(0, steps[0] + 1))
    before = parameters(training)
    training._train_step()
    changed = any(not torch.equal(a, b) for a, b in zip(before, parameters(training)))
    assert changed == moves
    assert steps[0] == (0 if on_skip == "none" else 1)


class Recorder(Technique):
    """Logs its hook calls, to check the loop's order."""

    def __init__(self, label, stage, log):
        self.name, self.stage, self.log = label, stage, log

    def prepare(self, model, run):
        self.log.append((self.name, "prepare"))
        return model

    def extra_loss(self, run, outputs, targets):
        self.log.append((self.name, "extra_loss"))
        return None

    def after_backward(self, run):
        self.log.append((self.name, "after_backward"))
        assert all(parameter.grad is not None for parameter in run.model.parameters())

    def after_step(self, run):
        self.log.append((self.name, "after_step"))

    def on_epoch_end(self, run):
        self.log.append((self.name, "epoch_end"))


def test_a_stack_calls_hooks_in_stage_order_and_the_loop_in_step_order():
    log = []
    stack = techniques.Stack([Recorder("late", 30, log), Recorder("early", 0, log)])
    training = make_training(stack, steps=10, eval_every=10)  # 10 batches of 20 = one epoch
    run_to_end(training)
    assert log[:2] == [("early", "prepare"), ("late", "prepare")]
    assert log[2:8] == [
        ("early", "extra_loss"), ("late", "extra_loss"),
        ("early", "after_backward"), ("late", "after_backward"),
        ("early", "after_step"), ("late", "after_step"),
    ]
    assert log.count(("early", "epoch_end")) == 1


def test_two_techniques_claiming_the_same_resource_are_rejected():
    with pytest.raises(ValueError, match="both control the batches"):
        techniques.Stack([selection(0.5), selection(0.7)])


def test_extra_loss_is_added_to_the_task_loss():
    class Penalty(Technique):
        name = "test_penalty"

        def extra_loss(self, run, outputs, targets):
            return 100.0 * outputs.pow(2).mean()

    plain, penalised = make_training(steps=20, eval_every=20), make_training(Penalty(), steps=20, eval_every=20)
    assert run_to_end(penalised)[-1]["loss"] > run_to_end(plain)[-1]["loss"]


def test_a_nan_loss_stops_training_with_a_clear_error():
    class Poison(Technique):
        name = "test_poison"

        def extra_loss(self, run, outputs, targets):
            return torch.tensor(float("nan"))

    with pytest.raises(TrainingDiverged, match="nan"):
        run_to_end(make_training(Poison()))


def test_the_window_loss_is_the_mean_of_the_kept_steps_losses():
    class Losses(Technique):
        """Records each kept step's loss by recomputing it on the batch the model saw."""

        name = "test_losses"

        def __init__(self):
            self.losses = []

        def extra_loss(self, run, outputs, targets):
            self.losses.append(float(run.loss_fn(outputs.detach(), targets)))
            return None

    recorder = Losses()
    history = run_to_end(make_training(recorder, steps=40, eval_every=20))
    for window, metrics in enumerate(history):
        assert metrics["loss"] == pytest.approx(sum(recorder.losses[20 * window : 20 * (window + 1)]) / 20, rel=1e-6)


def test_progress_counts_the_flops_of_every_kept_step_so_far():
    class Progress(Technique):
        name = "test_progress"

        def __init__(self):
            self.flops = []

        def after_step(self, run):
            self.flops.append(run.progress()["flops"])

    recorder = Progress()
    final = run_to_end(make_training(recorder, steps=10, eval_every=10))[-1]
    assert recorder.flops == [step * final["flops"] / 10 for step in range(1, 11)]


@pytest.mark.parametrize("every, due", [
    ("auto", [False, True, False, True, True]),  # a minute or more after the last checkpoint, then the last evaluation
    (3, [False, False, True, False, True]),
])
def test_a_trial_checkpoints_a_minute_apart_or_every_n_evaluations_and_always_the_last(every, due):
    times = iter([0.0, 30.0, 60.0, 90.0, 130.0, 140.0])  # the trial's start, then its five evaluations
    policy = CheckpointPolicy(every, clock=lambda: next(times))
    assert [policy.due(complete) for complete in [False, False, False, False, True]] == due


@pytest.mark.parametrize("every", [0, "often", 1.5, True])
def test_a_bad_checkpoint_every_is_a_one_line_problem(every):
    assert check_trial_config({"checkpoint_every": every}) == [
        f"checkpoint_every must be auto or a positive number of evaluations, got {every!r}"
    ]


def test_a_checkpoint_resumes_to_the_same_result(tmp_path):
    uninterrupted = make_training(selection(0.6), steps=60, eval_every=20)
    expected = run_to_end(uninterrupted)[-1]

    first = make_training(selection(0.6), steps=60, eval_every=20)
    evaluations = first.evaluations()
    next(evaluations)
    first.save(tmp_path / "training.pt")
    resumed = make_training(selection(0.6), steps=60, eval_every=20)
    resumed.load(tmp_path / "training.pt")
    final = run_to_end(resumed)[-1]
    assert final["step"] == 60
    assert final["kept_steps"] == expected["kept_steps"]
    assert final["quality"] == pytest.approx(expected["quality"], rel=1e-6)


def test_a_checkpoint_loaded_onto_an_accelerator_keeps_its_random_states_on_the_cpu(tmp_path):
    """Resuming on a GPU, with ``meta`` standing in for the device the run loads onto: what was saved on the
    CPU (the RNG states, SET's CPU topology generator) stays there, as ``set_state`` takes CPU byte tensors only."""

    def technique():
        return techniques.create(["redr_random"], {"redr_random": {"density": 0.3}})

    expected = run_to_end(make_training(technique(), steps=60, eval_every=20))[-1]
    first = make_training(technique(), steps=60, eval_every=20)
    next(first.evaluations())
    first.save(tmp_path / "training.pt")
    resumed = make_training(technique(), steps=60, eval_every=20)
    resumed.device = torch.device("meta")
    resumed.load(tmp_path / "training.pt")
    resumed.device = torch.device("cpu")  # the stand-in cannot compute; the model was saved on the CPU
    assert run_to_end(resumed)[-1]["quality"] == pytest.approx(expected["quality"], rel=1e-6)


def test_tensors_saved_on_an_accelerator_land_on_the_loading_runs_device():
    place, storage = restore_location(torch.device("meta")), torch.UntypedStorage(8)
    assert place(storage, "cuda:0").device.type == "meta"
    assert place(storage, "cpu") is storage


def test_a_cuda_runs_generator_state_is_saved_and_restored(tmp_path, monkeypatch):
    """No GPU here: torch.cuda's state functions are stand-ins, and the run is on CUDA only while saving and loading."""
    state, restored = torch.arange(16, dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda new_state, device="cuda": restored.append(new_state))
    training = make_training(steps=4, eval_every=2)
    next(training.evaluations())
    training.device = torch.device("cuda")
    training.save(tmp_path / "training.pt")
    resumed = make_training(steps=4, eval_every=2)
    resumed.device = torch.device("cuda")
    resumed.load(tmp_path / "training.pt")
    assert len(restored) == 1 and torch.equal(restored[0], state) and restored[0].device.type == "cpu"


def test_a_checkpoint_restores_a_changed_structure(tmp_path):
    training = make_training(steps=20, eval_every=10)
    next(training.evaluations())
    training.model[0] = torch.nn.Linear(100, 7)
    training.model[2] = torch.nn.Linear(7, 10)
    training.optimizer = training.make_optimizer(training.model)
    training.save(tmp_path / "training.pt")
    restored = make_training(steps=20, eval_every=10)
    restored.load(tmp_path / "training.pt")
    assert restored.model[0].out_features == 7
    assert restored.optimizer.param_groups[0]["params"][0] is restored.model[0].weight
    assert run_to_end(restored)[-1]["params_total"] == 100 * 7 + 7 + 7 * 10 + 10


def test_flops_per_kept_step_match_a_hand_count():
    batch, steps = 20, 10
    training = make_training(steps=steps, eval_every=steps)
    metrics = run_to_end(training)[-1]
    forward = 2 * batch * (100 * 50 + 50 * 10)
    backward = 2 * batch * (100 * 50 + 50 * 10) + 2 * batch * 50 * 10  # weight grads, then hidden input grad
    assert metrics["flops"] == steps * (forward + backward)


def test_live_parameters_do_not_count_zeros():
    model = torch.nn.Sequential(torch.nn.Linear(100, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
    with torch.no_grad():
        model[0].weight[:, :10] = 0
    assert live_parameters(model) == 5560 - 50 * 10


def test_metrics_carry_energy_with_its_source_and_grow_monotonically():
    history = run_to_end(make_training(steps=60, eval_every=20))
    assert [metrics["step"] for metrics in history] == [20, 40, 60]
    assert all(metrics["energy_source"] == "estimate" for metrics in history)
    energies = [metrics["energy_j"] for metrics in history]
    assert energies == sorted(energies) and energies[0] > 0
    assert history[-1]["complete"] and not history[0]["complete"]


def test_peak_memory_is_reported_per_trial():
    history = run_to_end(make_training(steps=20, eval_every=10))
    assert history[-1]["peak_memory_mb"] >= history[0]["peak_memory_mb"] > 0
    assert history[-1]["memory_source"] in ("rss", "rss-since-process-start")


def test_the_flop_counted_steps_are_left_out_of_energy_and_time():
    """A counter that ticks once per training forward: every step is charged but those under the FLOP counter."""

    class Recount(Technique):
        name = "test_recount"

        def after_step(self, run):
            if run.step % 5 == 0:
                run.structure_changed()

    class Forwards:
        source = "forwards"
        count = 0

        resolution_s = 0.0

        def joules(self):
            return float(self.count)

        def idle_watts(self):
            return 0.0

        def close(self):
            pass

    forwards = Forwards()
    training = make_training(Recount(), steps=20, eval_every=20)
    training.meter = EnergyMeter([forwards])
    training.model.register_forward_hook(lambda *args: setattr(forwards, "count", forwards.count + 1))
    metrics = run_to_end(training)[-1]
    counted = 4  # steps 1, 6, 11, 16
    assert metrics["energy_j"] == 20 - counted


class LearningRates(Technique):
    """Records the learning rate each optimizer step used."""

    name = "test_learning_rates"

    def __init__(self):
        self.used = []

    def after_step(self, run):
        self.used.append(run.optimizer.param_groups[0]["lr"])


def test_the_step_schedule_matches_multisteplr_at_epoch_milestones():
    recorder = LearningRates()
    # 200 examples in batches of 20: 10 steps an epoch, so the drops come after steps 10 and 25.
    training = make_training(recorder, steps=40, eval_every=40, schedule="step", lr=0.1, lr_milestones=[1, 2.5], lr_gamma=0.5)
    run_to_end(training)
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(reference, milestones=[10, 25], gamma=0.5)
    expected = []
    for _ in range(40):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        scheduler.step()
    assert recorder.used == pytest.approx(expected)


@pytest.mark.parametrize("train, message", [
    ({"schedule": "step"}, "needs train.lr_milestones"),
    ({"schedule": "step", "lr_milestones": [120, 60]}, "increasing positive epochs"),
    ({"schedule": "linear"}, "'constant', 'cosine' or 'step'"),
])
def test_a_bad_schedule_is_a_one_line_error(train, message):
    with pytest.raises(ValueError, match=message):
        make_training(None, **train)


def test_compiled_training_steps_run_torch_compile_and_train_as_the_eager_ones_do():
    from torch._dynamo.utils import counters

    eager, compiled = make_training(steps=12, eval_every=6), make_training(steps=12, eval_every=6, compile=True)
    frames = counters["frames"]["ok"]
    eager_history, compiled_history = run_to_end(eager), run_to_end(compiled)
    assert counters["frames"]["ok"] > frames, "the training steps ran through torch.compile"
    assert compiled._compiled[0] is compiled.model
    for ours, theirs in zip(compiled.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    assert [m["loss"] for m in compiled_history] == pytest.approx([m["loss"] for m in eager_history], rel=1e-4)
    assert compiled_history[-1]["flops"] == eager_history[-1]["flops"]  # counted on the model itself


@pytest.fixture
def recompile_limit_one(monkeypatch):
    """Dynamo's recompile limit at 1 (8 by default), and its graphs built without Inductor's C++ build."""
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    yield
    torch._dynamo.reset()  # no exhausted cache left for the tests after this one


def test_trial_after_compiled_trial_in_one_process_still_compiles(recompile_limit_one):
    """One worker, trial after trial: each new model adds to the same code's cache, and past the limit Dynamo
    would run the rest of the process eagerly."""
    for model in ("big", "small", "wide"):
        training = make_training(model=model, steps=4, eval_every=4, compile=True)
        assert not run_to_end(training)[-1]["compile_fallback"]


def test_a_compiled_trial_that_hits_the_recompile_limit_anyway_says_so(recompile_limit_one):
    training = make_training(steps=4, eval_every=4, compile=True)
    for width in (3, 4):  # other compiled code in the process, after the trial started, uses up the limit
        torch.compile(torch.nn.Linear(width, 2))(torch.randn(2, width))
    assert run_to_end(training)[-1]["compile_fallback"]
    assert not run_to_end(make_training(steps=4, eval_every=4))[-1]["compile_fallback"]  # eager by choice


def test_compile_must_be_true_or_false():
    with pytest.raises(ValueError, match="train.compile must be true or false"):
        make_training(compile="yes")


def test_a_compile_that_cannot_build_is_one_line_naming_the_fix(monkeypatch):
    """A machine without a working C++ compiler: the trial says so and how to go on, not Inductor's traceback."""
    import torch._dynamo
    import torch._inductor.config

    from greentune.trainables.loop import CompileFailed

    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, "/no/such/c++"))
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)  # a cached build would need no compiler
    torch._dynamo.reset()
    training = make_training(steps=4, eval_every=2, compile=True)
    try:
        with pytest.raises(CompileFailed, match=r"^train.compile: torch.compile failed \(InvalidCxxCompiler.*set train: \{compile: false\}$") as caught:
            run_to_end(training)
    finally:
        torch._dynamo.reset()  # no half-built frame left for the tests after this one
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
