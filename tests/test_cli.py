"""The command line: bad input gets one clear line and a non-zero exit, nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import MAX_POS, WINDOW
from hub_stub import HubStub
from typer.testing import CliRunner

from longzoo.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["convert", *args])


def invoke_tiny(base, out, *extra: str):
    """convert at the test sizes."""
    return invoke(
        "--base", str(base), "--max-pos", str(MAX_POS), "--attention-window", str(WINDOW), "--out", str(out), *extra
    )


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def out(tmp_path):
    """An output path whose parent must stay empty after a failed conversion."""
    parent = tmp_path / "outputs"
    parent.mkdir()
    yield parent / "model"
    assert list(parent.iterdir()) == [], "a failed conversion left files behind"


def test_help_lists_every_option():
    result = runner.invoke(app, ["convert", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--base",
        "--max-pos",
        "--attention-window",
        "--out",
        "--force",
        "--revision",
        "--position-init",
        "--dtype",
        "--allow-pickle",
        "--no-verify",
    ):
        assert option in result.output


def test_convert_prints_the_parity_report(base_models, out):
    result = invoke_tiny(base_models["bert-zh-mlm"], out)
    assert result.exit_code == 0, result.stderr
    assert "passed" in result.output and "parity at 33 tokens" in result.output
    parity = json.loads((out / "longzoo.json").read_text())["convert"]["parity"]
    assert f"{parity['max_abs_diff']:.2e}" in result.output
    for step in ("Reading base weights", "Converting weights", "Verifying parity"):
        assert f"✓ {step}" in result.output
    # the fixture's "nothing left behind" check does not apply to a success
    shutil.rmtree(out)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--max-pos", "64"], ["--max-pos 64", "64 positions"]),
        (["--max-pos", "0"], ["--max-pos must be positive"]),
        (["--max-pos", str(MAX_POS), "--attention-window", "63"], ["even", "63"]),
        (["--max-pos", str(MAX_POS), "--attention-window", "0"], ["positive even"]),
        (["--max-pos", str(MAX_POS), "--attention-window", "-2"], ["positive even"]),
        (["--max-pos", str(MAX_POS), "--attention-window", "512"], ["larger than --max-pos"]),
        (["--max-pos", str(MAX_POS), "--position-init", "random"], ["--position-init"]),
        (["--max-pos", str(MAX_POS), "--dtype", "int8"], ["--dtype"]),
    ],
)
def test_bad_sizes_and_options(base_models, out, args, fragments):
    assert_one_line_error(invoke("--base", str(base_models["bert-zh-mlm"]), "--out", str(out), *args), *fragments)


def test_missing_folder(out):
    assert_one_line_error(invoke("--base", "./no/such/model", "--max-pos", "1024", "--out", str(out)), "no such folder")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights(base_copy, out, damage):
    folder = base_copy("roberta-mlm")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else os.urandom(4096))
    assert_one_line_error(invoke_tiny(folder, out), "corrupt or truncated", "model.safetensors")


def test_unsupported_architecture(tmp_path, out):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    result = invoke("--base", str(folder), "--max-pos", "4096", "--out", str(out))
    assert_one_line_error(result, "'gpt2'", "bert", "camembert", "roberta", "xlm-roberta")


def test_folder_without_config(tmp_path, out):
    assert_one_line_error(invoke("--base", str(tmp_path), "--max-pos", "4096", "--out", str(out)), "no config.json")


def test_existing_output_needs_force(base_models, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = invoke_tiny(base_models["bert-encoder"], target)
    assert_one_line_error(result, "not empty", "--force")
    assert (target / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_unwritable_output(base_models, tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")  # even root cannot create a folder below a file
        target = blocker / "model"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "model"
    result = invoke_tiny(base_models["bert-encoder"], target)
    assert_one_line_error(result, "cannot write here")


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "longzoo", "convert", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def assert_one_line_stderr(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error: ") or "Traceback" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_hub_id_while_offline(tmp_path):
    proc = run_cli(
        "--base",
        "someone/some-model",
        "--max-pos",
        "4096",
        "--out",
        str(tmp_path / "o"),
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert_one_line_stderr(proc, "someone/some-model", "offline")
    assert not (tmp_path / "o").exists()


@pytest.fixture
def hub(base_models, tmp_path):
    """A loopback Hub serving one base model, with a pickle the download must skip."""
    repo = tmp_path / "repo"
    shutil.copytree(base_models["bert-zh-mlm"], repo)
    (repo / "pytorch_model.bin").write_bytes(b"not to be downloaded")
    with HubStub({"someone/tiny-zh": repo}) as stub:
        yield stub


def hub_env(stub: HubStub, tmp_path) -> dict:
    return {"HF_ENDPOINT": stub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"}


def test_hub_id_downloads_and_records_the_revision(hub, tmp_path):
    out = tmp_path / "o"
    proc = run_cli(
        "--base",
        "someone/tiny-zh",
        "--revision",
        "main",
        "--max-pos",
        str(MAX_POS),
        "--attention-window",
        str(WINDOW),
        "--out",
        str(out),
        env=hub_env(hub, tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    base = json.loads((out / "longzoo.json").read_text())["convert"]["base"]
    assert base == {
        **base,
        "id": "someone/tiny-zh",
        "source": "hub",
        "revision": hub.repos["someone/tiny-zh"].branches["main"],
    }
    fetched = [r for r in hub.requests if r.startswith("GET /someone/tiny-zh/resolve/")]
    assert any(r.endswith("/model.safetensors") for r in fetched)
    assert not any(r.endswith(".bin") for r in fetched)


def test_hub_id_not_found(tmp_path, hub):
    proc = run_cli(
        "--base", "someone/missing-model", "--max-pos", "4096", "--out", str(tmp_path / "o"), env=hub_env(hub, tmp_path)
    )
    assert_one_line_stderr(proc, "someone/missing-model", "not found on the Hub")
    assert not (tmp_path / "o").exists()


def test_version_and_logging_flags():
    import longzoo

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"longzoo {longzoo.__version__}"
    assert runner.invoke(app, ["-q", "zoo", "show", "roberta-zh-4096"]).exit_code == 0
    try:
        assert runner.invoke(app, ["-v", "zoo", "show", "roberta-zh-4096"]).exit_code == 0
    finally:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_warning()  # the flag sets process-wide state


def test_a_known_misnomer_names_the_real_id(tmp_path):
    proc = run_cli(
        "--base",
        "hfl/roberta-zh",
        "--max-pos",
        "4096",
        "--out",
        str(tmp_path / "o"),
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert_one_line_stderr(proc, "hfl/roberta-zh", "hfl/chinese-roberta-wwm-ext", "roberta-zh-4096")


def test_a_corpus_name_close_to_a_built_in_one_is_suggested():
    from longzoo.data.corpus import read_corpus
    from longzoo.errors import LongzooError

    with pytest.raises(LongzooError, match="did you mean the built-in corpus 'peoples-daily-1998'"):
        read_corpus("peoples-daily-98")


@pytest.mark.parametrize(
    "command",
    [
        ["convert"],
        ["card"],
        ["push"],
        ["pretrain"],
        ["finetune"],
        ["eval"],
        ["mask"],
        ["zoo", "list"],
        ["zoo", "build"],
    ],
)
def test_every_command_help_shows_an_example_and_no_bool_metavars(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and f"Example: longzoo {' '.join(command)}" in result.stdout
    options = result.stdout.split("--help")[0]  # typer's own --help keeps its metavar
    assert "<bool>" not in options
