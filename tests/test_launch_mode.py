"""Which ``accelerate launch`` modes ``unlearn`` accepts, read from the environment accelerate sets.

FSDP2 (``fsdp_version: 2``) is accepted masked or not; FSDP 1 and DeepSpeed keep a refusal that names
the FSDP2 config as the way to shard; FSDP2 refuses checkpoints before any work. The modes themselves
run in ``tests/test_fsdp2.py`` (FSDP2) and ``tests/test_distributed.py`` (DDP).
"""

from __future__ import annotations

import pytest

from grin_unlearn.config import TrainConfig, UnlearnConfig
from grin_unlearn.parallel.distributed import check_launch_mode, fsdp2_requested
from grin_unlearn.errors import UserInputError
from grin_unlearn.pipeline import unlearn

FSDP1 = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}
FSDP2 = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}
ZERO2 = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}
ZERO3 = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}


@pytest.fixture()
def launch_env(monkeypatch):
    for name in ("ACCELERATE_USE_FSDP", "FSDP_VERSION", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE",
                 "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def set_env(values: dict) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.mark.parametrize("env, masked", [(FSDP1, True), (FSDP1, False), (ZERO2, True), (ZERO3, True), (ZERO3, False)])
def test_refusals_name_fsdp2(launch_env, env, masked):
    launch_env(env)
    with pytest.raises(UserInputError, match=r"configs/accelerate/fsdp2\.yaml \(FSDP2\)"):
        check_launch_mode(masked=masked)


@pytest.mark.parametrize("env, masked", [({}, True), (FSDP2, True), (FSDP2, False), (ZERO2, False)])
def test_accepted_modes(launch_env, env, masked):
    launch_env(env)
    check_launch_mode(masked=masked)


def test_fsdp2_needs_several_processes(launch_env):
    launch_env(FSDP2)
    assert not fsdp2_requested()  # one process: nothing to shard, the plain path runs
    launch_env({"WORLD_SIZE": "2"})
    assert fsdp2_requested()
    launch_env(FSDP1)
    assert not fsdp2_requested()


def test_fsdp2_refuses_checkpoints_before_any_work(launch_env, tmp_path):
    launch_env({**FSDP2, "WORLD_SIZE": "2"})
    config = UnlearnConfig(train=TrainConfig(save_steps=1))
    with pytest.raises(UserInputError, match="not supported under FSDP2"):
        unlearn(None, None, [{"question": "q", "answer": "a"}], [], config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
