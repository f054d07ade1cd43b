"""Shared fixtures: a micro world and a tiny model (hidden 32) so tests run in seconds on a CPU."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hypothesis import settings

os.environ.setdefault("GRIN_UNLEARN_QUIET", "1")
# CI runs a fixed set of examples (no flaky reds on a shared machine); developers explore new ones.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
torch.set_num_threads(1)

from grin_unlearn.data.world import generate_world, world_corpus  # noqa: E402
from grin_unlearn.models import TinyModelConfig, build_tiny_model, train_tokenizer  # noqa: E402

MICRO_MODEL = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, max_position_embeddings=96, vocab_size=512)


@pytest.fixture(scope="session")
def micro_world() -> dict[str, list[dict]]:
    return generate_world(authors=10, holdout_authors=1, seed=0, questions_per_author=12)


@pytest.fixture(scope="session")
def micro_tokenizer(micro_world):
    return train_tokenizer(world_corpus(micro_world), MICRO_MODEL.vocab_size)


@pytest.fixture()
def micro_model(micro_tokenizer):
    return build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)


@pytest.fixture(scope="module")
def eval_model(micro_tokenizer):
    """The micro model in eval mode, shared by one module's tests (they only read it)."""
    return build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0).eval()


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory, micro_tokenizer):
    path = tmp_path_factory.mktemp("micro_model")
    build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0).save_pretrained(path)
    micro_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def micro_world_dir(tmp_path_factory):
    from grin_unlearn.data.world import write_world

    path = tmp_path_factory.mktemp("world") / "world"
    return write_world(path, authors=10, holdout_authors=1, seed=0, questions_per_author=12, background=False)


class Launcher:
    """Starts a script on several local processes (gloo on the CPU) and fails the test with its output
    if it exits non-zero: the one launcher of the distributed tests."""

    repo = Path(__file__).resolve().parents[1]
    env = {"OMP_NUM_THREADS": "1", "GRIN_UNLEARN_QUIET": "1", "TOKENIZERS_PARALLELISM": "false"}

    @staticmethod
    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    @staticmethod
    def console_script(name: str, module: str) -> list[str]:
        """The venv's ``name`` script beside this interpreter, else ``python -m module``."""
        script = Path(sys.executable).with_name(name)
        return [str(script)] if script.is_file() else [sys.executable, "-m", module]

    def torchrun(self, nproc: int) -> list[str]:
        return [*self.console_script("torchrun", "torch.distributed.run"), "--nproc_per_node", str(nproc),
                "--master_addr", "127.0.0.1", "--master_port", str(self.free_port())]

    def run(self, command: list[str], timeout: int, **env: str) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=self.repo, env={**os.environ, **self.env, **env}, capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            pytest.fail(f"{Path(command[0]).name} exited with {proc.returncode} after "
                        f"{time.perf_counter() - start:.0f}s:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
        return proc


@pytest.fixture(scope="session")
def launcher() -> Launcher:
    return Launcher()


def saved_group(saved: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors a worker saved as ``<prefix>/<name>``, keyed by ``name``."""
    return {key.split("/", 1)[1]: value for key, value in saved.items() if key.startswith(prefix + "/")}


def assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], what: str) -> None:
    """Same names and bit-identical values."""
    assert got.keys() == want.keys(), f"{what}: different tensor names"
    for name in want:
        assert torch.equal(got[name], want[name]), f"{what}: {name} differs"
