"""Bad input to `grin-unlearn unlearn`: exit code 2, one message naming the input, nothing written.

Each case drives ``cli.main`` in-process. Most fail before the model is loaded; the few that need the
model (mask shapes, pad token, context length) use the micro model with one optimizer step.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from grin_unlearn.cli import main
from grin_unlearn.masks import save_mask

FAST = ["--epochs", "1", "--batch-size", "16", "--scorer", "none", "--max-length", "48"]


def _data(tmp_path, forget, retain, suffix=".json"):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    for name, records in (("forget", forget), ("retain", retain)):
        if isinstance(records, str):
            (folder / f"{name}{suffix}").write_text(records)
        else:
            (folder / f"{name}{suffix}").write_text(json.dumps(records))
    return folder


def _run(model, data, out, *extra, forget="forget", retain="retain"):
    return main(["unlearn", "--model", str(model), "--data", str(data), "--forget", forget, "--retain", retain,
                 "--out", str(out), *FAST, *extra])


def _fails(capsys, rc, *fragments):
    err = capsys.readouterr().err.splitlines()[-1]  # earlier lines: progress bars of the model load
    assert rc == 2, err
    assert err.startswith("grin-unlearn unlearn: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture()
def records(micro_world):
    return micro_world["forget10"][:4], micro_world["retain90"][:8]


def test_missing_model_path(tmp_path, capsys, micro_world_dir):
    out = tmp_path / "out"
    rc = _run(tmp_path / "no-model", micro_world_dir, out, forget="forget10", retain="retain90")
    _fails(capsys, rc, "--model", "no-model", "not a model folder")
    assert not out.exists()


def test_missing_data_path(tmp_path, capsys, micro_model_dir):
    out = tmp_path / "out"
    _fails(capsys, _run(micro_model_dir, tmp_path / "no-data", out), "--data", "no-data", "not a folder")
    assert not out.exists()


def test_unreadable_data_file(tmp_path, capsys, micro_model_dir, records):
    data = _data(tmp_path, records[0], records[1])
    (data / "forget.json").write_bytes(b'[{"question": "\xff\xfe"}]')
    out = tmp_path / "out"
    _fails(capsys, _run(micro_model_dir, data, out), "forget.json", "cannot be read as UTF-8")
    assert not out.exists()


def test_malformed_jsonl_names_file_and_line(tmp_path, capsys, micro_model_dir, records):
    lines = json.dumps(records[0][0]) + "\n" + json.dumps(records[0][1]) + "\n{not json\n"
    data = _data(tmp_path, lines, "\n".join(json.dumps(r) for r in records[1]), suffix=".jsonl")
    out = tmp_path / "out"
    _fails(capsys, _run(micro_model_dir, data, out), "forget.jsonl", "line 3", "not valid JSON")
    assert not out.exists()


def test_malformed_json_array_names_line(tmp_path, capsys, micro_model_dir, records):
    data = _data(tmp_path, records[0], '[\n{"question": "Q?", "answer": "A."},\n{"question": }\n]')
    out = tmp_path / "out"
    _fails(capsys, _run(micro_model_dir, data, out), "retain.json", "line 3")
    assert not out.exists()


def test_record_missing_required_field(tmp_path, capsys, micro_model_dir, records):
    broken = [records[0][0], {"question": "Who?"}]
    data = _data(tmp_path, broken, records[1])
    out = tmp_path / "out"
    _fails(capsys, _run(micro_model_dir, data, out), ":forget", "record 1", "'answer'")
    assert not out.exists()


@pytest.mark.parametrize("empty", ["forget", "retain"])
def test_empty_split(tmp_path, capsys, micro_model_dir, records, empty):
    forget, retain = ([] if empty == "forget" else records[0]), ([] if empty == "retain" else records[1])
    out = tmp_path / "out"
    _fails(capsys, _run(micro_model_dir, _data(tmp_path, forget, retain), out), f":{empty}", "empty")
    assert not out.exists()


def test_overlap_warns_with_count_by_default(tmp_path, capsys, records):
    data = _data(tmp_path, records[0], records[1] + records[0][:2])
    out = tmp_path / "out"
    rc = _run(tmp_path / "no-model", data, out)  # a warning, not an error: the run goes on to the model load
    warning, error = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: 2 question(s) appear in both the forget and the retain split")
    assert "--strict" in warning
    assert rc == 2 and "--model" in error  # the next check, proving the overlap did not stop the run
    assert not out.exists()


def test_overlap_is_an_error_with_strict(tmp_path, capsys, micro_model_dir, records):
    data = _data(tmp_path, records[0], records[1] + records[0][:2])
    out = tmp_path / "out"
    _fails(capsys, _run(micro_model_dir, data, out, "--strict"), "--forget/--retain", "2 question(s)")
    assert not out.exists()


@pytest.mark.parametrize("flag, value, fragment", [
    ("--ratio", "0", "--ratio: expected a fraction in (0, 1]"),
    ("--ratio", "1.5", "--ratio: expected a fraction in (0, 1]"),
    ("--noise-var", "-0.1", "--noise-var: expected σ² >= 0"),
    ("--objective", "forgetful", "unknown objective 'forgetful'; expected one of: "),
    ("--scorer", "psychic", "--scorer: unknown scorer 'psychic' (valid: "),
    ("--forget", "forget99", "split 'forget99': not found"),
])
def test_bad_value_names_flag_and_valid_choices(tmp_path, capsys, micro_model_dir, micro_world_dir, flag, value,
                                                fragment):
    out = tmp_path / "out"
    rc = _run(micro_model_dir, micro_world_dir, out, flag, value, forget="forget10", retain="retain90")
    err = _fails(capsys, rc, fragment)
    if flag == "--objective":
        assert "npo" in err and "graddiff" in err
    if flag == "--scorer":
        assert "grin" in err and "random" in err
    if flag == "--forget":
        assert "available: " in err and "forget10" in err
    assert not out.exists()


def test_mask_with_wrong_shapes(tmp_path, capsys, micro_model_dir, micro_world_dir):
    mask = tmp_path / "mask.safetensors"
    save_mask(mask, {"model.layers.0.self_attn.q_proj.weight": torch.ones(3, 5, dtype=torch.bool)}, metadata={})
    out = tmp_path / "out"
    rc = _run(micro_model_dir, micro_world_dir, out, "--mask", str(mask), forget="forget10", retain="retain90")
    _fails(capsys, rc, "mask: tensor 'model.layers.0.self_attn.q_proj.weight' has shape (3, 5)")
    assert not out.exists()


def test_mask_that_is_not_safetensors(tmp_path, capsys, micro_model_dir, micro_world_dir):
    mask = tmp_path / "mask.safetensors"
    torch.save({"w": torch.ones(2)}, mask)  # a pickle: never unpickled
    out = tmp_path / "out"
    rc = _run(micro_model_dir, micro_world_dir, out, "--mask", str(mask), forget="forget10", retain="retain90")
    _fails(capsys, rc, "mask file", "not a safetensors file")
    assert not out.exists()


def test_out_with_finished_run_is_refused(tmp_path, capsys, micro_model_dir, micro_world_dir):
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "run.json").write_text('{"status": "finished"}')
    (out / "model" / "weights").write_text("old")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    rc = _run(micro_model_dir, micro_world_dir, out, forget="forget10", retain="retain90")
    _fails(capsys, rc, "--out", "already holds a finished run", "--overwrite")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_out_with_stale_checkpoints_needs_resume_or_overwrite(tmp_path, capsys, micro_model_dir, micro_world_dir):
    out = tmp_path / "out"
    (out / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    rc = _run(micro_model_dir, micro_world_dir, out, forget="forget10", retain="retain90")
    _fails(capsys, rc, "--out", "unfinished run", "--resume")
    assert [p.name for p in out.rglob("*")] == ["checkpoints", "checkpoint-4"]


def test_resume_with_other_settings_is_refused_before_the_model_is_loaded(tmp_path, capsys, micro_world_dir):
    """The record says lr 0.5; the command says 1.0. The model path does not exist: the check comes first."""
    from grin_unlearn.commands.unlearn import add_arguments, resolve_config
    from grin_unlearn.data.formatting import PromptFormat
    from grin_unlearn.data.records import load_qa_split
    from grin_unlearn.pipeline import resume_record

    out = tmp_path / "out"
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    argv = ["--model", str(tmp_path / "no-model"), "--data", str(micro_world_dir), "--forget", "forget10", "--retain", "retain90",
            "--out", str(out), *FAST]
    parser = __import__("argparse").ArgumentParser()
    add_arguments(parser)
    config = resolve_config(parser.parse_args([*argv, "--lr", "0.5"]))
    record = resume_record(config, load_qa_split(micro_world_dir, "forget10"), load_qa_split(micro_world_dir, "retain90"),
                           PromptFormat(max_length=48))
    (out / "checkpoints" / "run_config.json").write_text(json.dumps(record))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    rc = main(["unlearn", *argv, "--lr", "1.0", "--resume"])
    _fails(capsys, rc, "--resume: the checkpoints in", "different setup (config.train.lr: checkpoint 0.5, "
                                                        "this command 1.0)", "--overwrite")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    # The same settings pass the check and only then fail on the missing model.
    rc = main(["unlearn", *argv, "--lr", "0.5", "--resume"])
    _fails(capsys, rc, "--model", "no-model", "not a model folder")
    # A record from before the auto-ratio fields existed: they take their defaults, so it still matches.
    for key in ("auto_rule", "auto_share"):
        del record["config"]["selection"][key]
    (out / "checkpoints" / "run_config.json").write_text(json.dumps(record))
    rc = main(["unlearn", *argv, "--lr", "0.5", "--resume"])
    _fails(capsys, rc, "--model", "no-model", "not a model folder")


def test_tokenizer_without_pad_token_runs(tmp_path, capsys, micro_model_dir, micro_world_dir):
    from transformers import AutoTokenizer

    model_dir = tmp_path / "model"
    shutil.copytree(micro_model_dir, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(model_dir)
    assert AutoTokenizer.from_pretrained(model_dir).pad_token is None
    out = tmp_path / "out"
    rc = _run(model_dir, micro_world_dir, out, forget="forget10", retain="retain90")
    assert rc == 0, capsys.readouterr().err
    assert (out / "run.json").is_file()


def test_inputs_longer_than_the_context_are_truncated_with_one_warning(tmp_path, capsys, caplog, micro_model_dir,
                                                                        records):
    long = dict(records[0][0], answer=" ".join(["word"] * 300))  # far beyond the 96-token context
    data = _data(tmp_path, [long] + records[0][1:], records[1])
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="grin_unlearn"):
        rc = main(["unlearn", "--model", str(micro_model_dir), "--data", str(data), "--forget", "forget",
                   "--retain", "retain", "--out", str(out), "--epochs", "1", "--batch-size", "16",
                   "--scorer", "none", "--max-length", "4096"])
    assert rc == 0, capsys.readouterr().err
    warnings = [r.getMessage() for r in caplog.records if r.name == "grin_unlearn.pipeline" and "truncated" in r.message]
    assert warnings == ["1 of 16 training examples (forget, refusal and retain) were longer than 96 tokens "
                        "and were truncated"]


def test_console_entry_exits_with_the_code_and_flushed_output(micro_model_dir, micro_world_dir, tmp_path):
    """``entry`` (the console script) ends the process with ``os._exit``: the exit code, stdout, stderr and
    the files written must all survive that."""
    import subprocess
    import sys

    run = lambda *args: subprocess.run([sys.executable, "-c", "from grin_unlearn.cli import entry; entry()", *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=300)
    bad = run("eval", "--model", str(tmp_path / "missing"), "--data", str(micro_world_dir), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "is not a model folder" in bad.stderr and not (tmp_path / "x").exists()
    good = run("eval", "--model", str(micro_model_dir), "--data", str(micro_world_dir), "--out", str(tmp_path / "e"),
               "--max-items", "2", "--max-new-tokens", "4", "--no-mia")
    assert good.returncode == 0, good.stderr
    assert good.stdout.rstrip().endswith("TOFU_EVAL.json") and json.loads((tmp_path / "e" / "eval.json").read_text())
