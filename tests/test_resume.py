"""Crashes: a SIGKILLed run resumes bit-identically; a NaN loss stops with exit code 3 and keeps data.

The killed run is a real subprocess of ``python -m grin_unlearn.cli`` run through a two-line wrapper
that sleeps after each optimizer step from step 2 on (numerics untouched), so the test can always
SIGKILL it between ``checkpoint-2`` and the end instead of racing a sub-second run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

from grin_unlearn.cli import main

SLOW_CLI = """
import runpy, sys, time
from grin_unlearn.training.trainer import UnlearningTrainer
step = UnlearningTrainer.training_step
def slow(self, *args, **kwargs):
    out = step(self, *args, **kwargs)
    if self.state.global_step >= 2:
        time.sleep(1.0)
    return out
UnlearningTrainer.training_step = slow
sys.argv[0] = "grin_unlearn.cli"
runpy.run_module("grin_unlearn.cli", run_name="__main__")
"""


def _args(model_dir, world_dir, out, *extra):
    # 12 forget records, batch 4, 2 epochs: 6 steps, checkpoints at 2, 4, 6; GRIN with noise and a mask.
    return ["unlearn", "--model", str(model_dir), "--data", str(world_dir), "--forget", "forget10",
            "--retain", "retain90", "--out", str(out), "--epochs", "2", "--batch-size", "4", "--save-steps", "2",
            "--ratio", "0.3", "--noise-var", "1e-3", "--max-length", "48", "--score-batch-size", "16",
            "--lr", "1e-3", *extra]  # the weights must move visibly (NPO's default lr 1e-5 is for LLMs)


def _weights(run_dir):
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_sigkilled_run_resumes_bit_identical(tmp_path, micro_model_dir, micro_world_dir, capsys):
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", GRIN_UNLEARN_QUIET="1")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *_args(micro_model_dir, micro_world_dir, killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = killed / "checkpoints" / "checkpoint-2" / "trainer_state.json"  # written last in a checkpoint
    deadline = time.monotonic() + 240
    while not marker.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert marker.is_file() and not (killed / "run.json").exists()
    # A checkpoint cut short by the kill (no trainer_state.json) must be skipped, not loaded.
    (killed / "checkpoints" / "checkpoint-99").mkdir()

    assert main(_args(micro_model_dir, micro_world_dir, tmp_path / "straight")) == 0
    assert main(_args(micro_model_dir, micro_world_dir, killed, "--resume")) == 0
    assert "resuming from " + str(killed / "checkpoints" / "checkpoint-2") in capsys.readouterr().out

    straight, resumed = _weights(tmp_path / "straight"), _weights(killed)
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert straight[name].dtype == resumed[name].dtype
        assert straight[name].view(-1).view(dtype=_int_of(straight[name])).equal(
            resumed[name].view(-1).view(dtype=_int_of(resumed[name]))), name
    assert not (killed / "checkpoints").exists() and (killed / "run.json").is_file()


def _int_of(tensor):
    """Same-width integer dtype, so equality is bit equality (NaN == NaN, -0.0 != 0.0)."""
    import torch

    return {2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]


def test_nan_loss_stops_with_exit_3_and_keeps_the_old_run(tmp_path, micro_model_dir, micro_world_dir, capsys):
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "weights").write_text("old run")
    (out / "run.json").write_text('{"status": "finished"}')
    # lr 1e30: after warm-up the updates blow the weights up and a later step's loss is not finite.
    rc = main(["unlearn", "--model", str(micro_model_dir), "--data", str(micro_world_dir), "--forget", "forget10",
               "--retain", "retain90", "--out", str(out), "--overwrite", "--scorer", "none", "--lr", "1e30",
               "--epochs", "1", "--batch-size", "2", "--save-steps", "1", "--max-length", "48"])
    err = capsys.readouterr().err.splitlines()[-1]
    assert rc == 3, err
    assert err.startswith("grin-unlearn unlearn: stopped: the npo loss became ")
    step = int(re.search(r"at step (\d+);", err).group(1))
    # Step s's loss comes from the weights saved at s - 1, so the last good checkpoint is s - 2.
    good = out / "checkpoints" / f"checkpoint-{step - 2}"
    assert err.endswith(f"the last good checkpoint is {good}")
    assert all(t.isfinite().all() for t in load_file(str(good / "model.safetensors")).values())
    # The overwritten run is retired (no run.json), but its artifacts were not deleted before success.
    assert not (out / "run.json").exists()
    assert (out / "model" / "weights").read_text() == "old run"


def test_masked_adamw_state_keeps_fp32_moments_through_a_bf16_reload():
    """torch casts loaded optimizer state to the parameter dtype; MaskedAdamW keeps its fp32 moments."""
    import torch

    from grin_unlearn.training.masked_optim import MaskedAdamW

    def fresh():
        param = torch.nn.Parameter(torch.arange(6, dtype=torch.bfloat16).reshape(2, 3))
        return param, MaskedAdamW([param], {param: torch.tensor([[True, False, True], [False, True, False]])})

    param, optimizer = fresh()
    param.grad = torch.full_like(param, 0.3)
    optimizer.step()
    saved = optimizer.state_dict()
    param2, optimizer2 = fresh()
    optimizer2.load_state_dict(saved)
    state, state2 = optimizer.state[param], optimizer2.state[param2]
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert state2[key].dtype == torch.float32 and state2[key].equal(state[key]), key
