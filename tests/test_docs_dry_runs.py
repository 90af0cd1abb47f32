"""Every dry-run command in README.md and docs/*.md runs as written on a fresh checkout: no data, no AWS
credentials, no role or bucket. It exits 0, says when its data input is a placeholder, and prints nothing that
reads as a call made (the SDK's "Creating training-job ..." lines are reworded in a dry run)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CLOSED_PORT, ROOT

DRY_RUN = "backend.dry_run=true"


def code_blocks(text: str) -> tuple[list[str], str]:
    """The shell code blocks of a Markdown page (fences read line by line), and the text outside blocks."""
    blocks, outside, block, language = [], [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if block is None:
                block, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh", "shell"):
                    blocks.append("\n".join(block))
                block = None
        elif block is not None:
            block.append(line)
        else:
            outside.append(line)
    return blocks, "\n".join(outside)


def documented_dry_runs() -> list[tuple[str, str]]:
    """(page, command) for each `python ...` command with backend.dry_run=true in the docs: the lines of
    code blocks (a trailing `\\` continues a line; comments left out) and inline code spans."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks, outside = code_blocks(page.read_text())
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                command = line.split(" #")[0].strip()
                if command.startswith("python ") and DRY_RUN in command:
                    found.append((page.name, " ".join(command.split())))
        for span in re.findall(r"`(python [^`]+)`", outside):
            if DRY_RUN in span:
                found.append((page.name, " ".join(span.split())))
    return found


def fresh_checkout_environment(home: Path) -> dict[str, str]:
    """No credentials, no region, role or bucket, nothing reachable: what a new user has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.update(
        AWS_CONFIG_FILE=str(home / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=CLOSED_PORT,
    )
    return env


def test_the_docs_show_dry_runs_of_training_tuning_and_deploying():
    scripts = {shlex.split(command)[1] for _, command in documented_dry_runs()}
    assert {"train.py", "tune.py", "serve/deploy.py"} <= scripts, documented_dry_runs()


@pytest.mark.slow  # a fresh interpreter importing Hydra and the SDK, per command
@pytest.mark.parametrize(("page", "command"), documented_dry_runs())
def test_a_documented_dry_run_runs_as_written(page, command, tmp_path):
    words = shlex.split(command)
    result = subprocess.run(
        [sys.executable, *words[1:], f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        env=fresh_checkout_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{page}: {command}\n{output[-3000:]}"
    assert not re.search(r"\b(Creating|Deleting|Uploading)\b", output), output[-3000:]
    assert "nothing was sent" in output
    if "PLACEHOLDER-no-data-given" in output:
        assert "the request shows the placeholder input" in output
