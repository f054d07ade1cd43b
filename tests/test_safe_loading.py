"""Safe loading and safe writing: no pickle, no remote code by default, no code from config files,
and every artifact written through a temporary name (checked over the package's source with ``ast``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import grin_unlearn
from grin_unlearn.cli import main
from grin_unlearn.config import load_yaml
from grin_unlearn.errors import UserInputError
from grin_unlearn.models import load_model, load_tokenizer

PACKAGE = Path(grin_unlearn.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


class _Captured(Exception):
    pass


@pytest.mark.parametrize("loader, target", [(load_model, "AutoModelForCausalLM"), (load_tokenizer, "AutoTokenizer")])
def test_remote_code_is_off_unless_asked(monkeypatch, micro_model_dir, loader, target):
    import transformers

    seen = []

    def capture(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code", "missing"))
        raise _Captured

    monkeypatch.setattr(getattr(transformers, target), "from_pretrained", capture)
    for kwargs in ({}, {"trust_remote_code": True}):
        with pytest.raises(_Captured):
            loader(str(micro_model_dir), **kwargs)
    assert seen == [False, True]


def test_cli_passes_trust_remote_code_only_with_the_flag():
    from grin_unlearn.cli import build_parser

    base = ["unlearn", "--model", "m", "--data", "d", "--out", "o"]
    assert build_parser().parse_args(base).trust_remote_code is False
    assert build_parser().parse_args(base + ["--trust-remote-code"]).trust_remote_code is True


def test_yaml_python_tags_are_rejected(tmp_path, capsys, micro_model_dir, micro_world_dir):
    canary = tmp_path / "canary"
    config = tmp_path / "evil.yaml"
    config.write_text(f'objective: !!python/object/apply:os.system ["touch {canary}"]\n')
    with pytest.raises(UserInputError, match=r"evil.yaml: not valid YAML .*python/object"):
        load_yaml(config)
    rc = main(["unlearn", "--model", str(micro_model_dir), "--data", str(micro_world_dir), "--forget", "forget10",
               "--retain", "retain90", "--out", str(tmp_path / "out"), "--config", str(config)])
    assert rc == 2 and "not valid YAML" in capsys.readouterr().err
    assert not canary.exists() and not (tmp_path / "out").exists()


# --- source checks ---------------------------------------------------------------------------------

def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, name, owner


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE)}:{node.lineno}"


def test_no_pickle_eval_exec_or_unsafe_yaml_in_the_package():
    bad = []
    for path in SOURCES:
        for node, name, owner in _calls(path):
            weights_only = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
            builtin = isinstance(node.func, ast.Name)  # eval(...), not model.eval()
            if (builtin and name in ("eval", "exec", "compile", "__import__")) or owner == "pickle" \
                    or (owner == "yaml" and name in ("load", "unsafe_load", "full_load")) \
                    or (owner == "torch" and name == "load" and not weights_only):
                bad.append(_where(path, node))
    assert bad == []


def _write_mode(node: ast.Call) -> bool:
    """``open(p, "w")``, ``path.open("a")``, ``open(p, mode="wb")``: a constant mode string that writes."""
    nodes = list(node.args) + [k.value for k in node.keywords if k.arg == "mode"]
    values = [n.value for n in nodes if isinstance(n, ast.Constant)]
    return any(isinstance(v, str) and re.fullmatch(r"[rwaxbt+]+", v) and set(v) & set("wax") for v in values)


def test_every_write_goes_through_a_temporary_name():
    """Outside ``io_utils``: no direct file writes; ``save_pretrained`` only into a staging folder."""
    bad = []
    for path in SOURCES:
        if path.name == "io_utils.py":
            continue
        for node, name, owner in _calls(path):
            if name in ("write_text", "write_bytes") or (name == "open" and _write_mode(node)) \
                    or (owner == "torch" and name == "save") or (owner == "json" and name == "dump"):
                bad.append(_where(path, node))
            if name == "save_pretrained":
                target = node.args[0] if node.args else None
                if not (isinstance(target, ast.Name) and "staging" in target.id):
                    bad.append(_where(path, node))
            if name == "savefig" and not (node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "buffer"):
                bad.append(_where(path, node))
    assert bad == []
