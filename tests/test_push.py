"""`longzoo push` against a loopback Hub that speaks the real client's HTTP API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml
from hub_stub import HubStub

from longzoo.errors import LongzooError
from longzoo.hub import IGNORE, files_to_upload, push
from longzoo.manifest import read_manifest, write_manifest

TOKEN = "hf_longzooTestSecretToken0123456789"
REPO = "someone/tiny-zh-longformer"


@pytest.fixture(autouse=True)
def no_xet(monkeypatch):
    # With hf-xet installed the client would ask for Xet tokens instead of plain LFS.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture
def hub():
    with HubStub(token=TOKEN) as stub:
        yield stub


@pytest.fixture
def model(converted, tmp_path) -> Path:
    """A converted Chinese MLM with a licence, plus training leftovers push must skip."""
    folder = tmp_path / "tiny-zh-longformer"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    from longzoo.cards import render_card

    render_card(folder, license="apache-2.0")
    (folder / "checkpoint-100").mkdir()
    (folder / "checkpoint-100" / "optimizer.pt").write_bytes(b"optimizer state")
    (folder / "optimizer.pt").write_bytes(b"optimizer state")
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "blocks.arrow").write_bytes(b"cache")
    return folder


def do_push(model, hub, **kwargs):
    return push(model, REPO, endpoint=hub.url, token=TOKEN, **kwargs)


def test_upload_is_byte_identical_and_skips_training_leftovers(model, hub):
    result = do_push(model, hub)
    uploaded = hub.files(REPO)
    expected = {p for p, _ in files_to_upload(model)}
    assert (
        set(uploaded)
        == expected
        == {
            "README.md",
            "config.json",
            "longzoo.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        }
    )
    for path in expected - {"longzoo.json"}:  # the manifest gains the push record afterwards
        assert uploaded[path] == (model / path).read_bytes(), path
    assert hub.lfs_blobs, "weights should travel through the LFS batch API"
    assert result.repo_url == f"{hub.url}/{REPO}" and result.commit_url
    assert any("longzoo/" in agent for agent in hub.user_agents)
    commits = [r for r in hub.requests if r.startswith("POST /api/models/") and "/commit/" in r]
    assert len(commits) == 1, "one commit, so the Hub never shows half a model"
    assert read_manifest(model).push.repo_id == REPO


def test_published_card_metadata_and_snippet(model, hub):
    do_push(model, hub)
    readme = hub.files(REPO)["README.md"].decode()
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["license"] == "apache-2.0" and meta["language"] == ["zh"]
    assert meta["pipeline_tag"] == "fill-mask" and meta["library_name"] == "transformers"
    assert {"longformer", "long-context", "longzoo"} <= set(meta["tags"])
    assert f'model_id = "{REPO}"' in readme
    assert "POST /api/validate-yaml" in hub.requests


def test_token_is_never_written_anywhere(model, hub):
    do_push(model, hub)
    for path, data in hub.files(REPO).items():
        assert TOKEN.encode() not in data, path
    for file in model.rglob("*"):
        if file.is_file():
            assert TOKEN.encode() not in file.read_bytes(), file
    assert f"Bearer {TOKEN}" in hub.auth_headers  # it was used, only in the header


def test_failing_commit_leaves_no_partial_repo(model, hub):
    hub.fail("commit", 500, times=3)
    with pytest.raises(LongzooError, match=r"HTTP 500") as info:
        do_push(model, hub)
    assert TOKEN not in str(info.value)
    assert hub.files(REPO) == {}, "nothing may appear before the one commit succeeds"
    assert read_manifest(model).push is None


def test_file_transfers_are_retried_by_huggingface_hub(model, hub):
    hub.fail("lfs", 503, times=1)  # the LFS batch call: huggingface_hub's own backoff retries it
    do_push(model, hub)
    assert "model.safetensors" in hub.files(REPO)


@pytest.mark.parametrize("route", ["create", "commit"])
def test_a_transient_failure_publishes_nothing_and_running_again_completes(model, hub, route):
    hub.fail(route, 503, times=1)  # not retried: a commit whose answer was lost would be made twice
    with pytest.raises(LongzooError, match="HTTP 503.*nothing was published: run the same command again"):
        do_push(model, hub)
    assert REPO not in hub.repos or hub.files(REPO) == {}
    assert read_manifest(model).push is None
    do_push(model, hub)
    assert "model.safetensors" in hub.files(REPO) and read_manifest(model).push.repo_id == REPO


def test_bad_token_gives_a_clear_error(model, hub):
    with pytest.raises(LongzooError, match="did not accept your credentials") as info:
        push(model, REPO, endpoint=hub.url, token="hf_wrong")
    assert "hf_wrong" not in str(info.value) and REPO not in hub.repos


@pytest.mark.parametrize(
    ("route", "status", "fragment"),
    [
        ("create", 403, "write access"),
        ("create", 404, "not found"),
        ("commit", 409, "conflict"),
        ("commit", 413, "too large"),
        ("create", 500, "HTTP 500"),
    ],
)
def test_hub_errors_become_one_clear_line(model, hub, route, status, fragment):
    hub.fail(route, status, times=5)
    with pytest.raises(LongzooError, match=fragment) as info:
        do_push(model, hub)
    assert "\n" not in str(info.value) and TOKEN not in str(info.value)


def test_unreachable_hub(model, hub):
    with pytest.raises(LongzooError, match="cannot reach the Hub"):
        push(model, REPO, endpoint="http://127.0.0.1:9", token=TOKEN)


def test_dry_run_sends_and_changes_nothing(model, hub):
    before = {p: p.read_bytes() for p in model.rglob("*") if p.is_file()}
    result = do_push(model, hub, dry_run=True)
    assert [p for p, _ in result.files] == sorted(p for p, _ in files_to_upload(model))
    assert "checkpoint-100/optimizer.pt" not in dict(result.files)
    assert hub.requests == []
    assert {p: p.read_bytes() for p in model.rglob("*") if p.is_file()} == before


def test_branch_and_pull_request(model, hub):
    do_push(model, hub, revision="long-4096")
    assert "model.safetensors" in hub.files(REPO, "long-4096") and hub.files(REPO) == {}
    result = do_push(model, hub, create_pr=True)
    assert result.pr_url.endswith("/discussions/1")
    assert hub.files(REPO) == {} and "model.safetensors" in hub.files(REPO, "refs/pr/1")


def test_private_repo(model, hub):
    do_push(model, hub, private=True)
    assert hub.repos[REPO].private


def test_refusals(model, hub, tmp_path):
    manifest = read_manifest(model)
    manifest.convert.parity.max_abs_diff = 1.0  # passed is derived from the numbers
    write_manifest(model, manifest)
    assert not read_manifest(model).convert.parity.passed
    with pytest.raises(LongzooError, match="failed its parity check"):
        do_push(model, hub)
    do_push(model, hub, force=True)
    manifest.convert.parity = None
    write_manifest(model, manifest)
    with pytest.raises(LongzooError, match="not verified"):
        do_push(model, hub)
    (model / "model.safetensors").unlink()
    with pytest.raises(LongzooError, match="no model.safetensors"):
        do_push(model, hub, force=True)
    with pytest.raises(LongzooError, match="OWNER/NAME"):
        push(model, "no-owner", endpoint=hub.url, token=TOKEN)


def test_card_without_license_is_refused_before_upload(converted, hub, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(converted["roberta-mlm"].out, folder)
    with pytest.raises(LongzooError, match="no license"):
        do_push(folder, hub)
    assert hub.requests == []


def test_ignore_patterns_cover_trainer_output():
    from huggingface_hub.utils import filter_repo_objects

    paths = [
        "checkpoint-5/model.safetensors",
        "optimizer.pt",
        "trainer_state.json",
        "runs/x/events",
        "loss.png",
        "checkpoints/checkpoint-5/optimizer.pt",
        "cache/abc.safetensors",
        "model.safetensors",
    ]
    assert list(filter_repo_objects(paths, ignore_patterns=IGNORE)) == ["loss.png", "model.safetensors"]


def test_convert_then_push_then_snippet_runs_as_written(base_models, hub, tmp_path):
    """Issue 3's 'done when': CLI convert + push, then the card's snippet, unedited."""
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": TOKEN,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
    }
    out = tmp_path / "tiny-zh-longformer"
    cli = [sys.executable, "-m", "longzoo"]
    convert = subprocess.run(
        [
            *cli,
            "convert",
            "--base",
            str(base_models["bert-zh-mlm"]),
            "--max-pos",
            "256",
            "--attention-window",
            "64",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert convert.returncode == 0, convert.stderr
    card = subprocess.run([*cli, "card", str(out), "--license", "apache-2.0"], capture_output=True, text=True, env=env)
    assert card.returncode == 0, card.stderr
    pushed = subprocess.run(
        [*cli, "push", str(out), "--repo-id", REPO], capture_output=True, text=True, env=env, timeout=300
    )
    assert pushed.returncode == 0, pushed.stderr
    assert f"{hub.url}/{REPO}" in pushed.stdout
    for stream in (convert.stdout, convert.stderr, pushed.stdout, pushed.stderr):
        assert TOKEN not in stream

    readme = hub.files(REPO)["README.md"].decode()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    run = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    predictions = eval(run.stdout.strip().splitlines()[-1])  # the snippet prints a list of tokens
    assert isinstance(predictions, list) and len(predictions) == 5
    assert any(r.startswith("GET /someone/tiny-zh-longformer/resolve/") for r in hub.requests)
    assert json.loads(hub.files(REPO)["longzoo.json"])["card"]["repo_id"] == REPO


def test_cli_push_error_is_one_line_without_the_token(model, hub, tmp_path):
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": "hf_notTheRightOne42",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_XET": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "longzoo", "push", str(model), "--repo-id", REPO],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: the Hub did not accept your credentials: set HF_TOKEN or run `hf auth login` "
        "(Invalid credentials in Authorization header)"
    ]
    assert "hf_notTheRightOne42" not in proc.stdout + proc.stderr


def test_cli_dry_run_lists_files(model, hub):
    from typer.testing import CliRunner

    from longzoo.cli import app

    result = CliRunner().invoke(app, ["push", str(model), "--repo-id", REPO, "--dry-run"])
    assert result.exit_code == 0, result.stderr
    assert "would upload 6 files" in result.output and "model.safetensors" in result.output
    assert "optimizer.pt" not in result.output
