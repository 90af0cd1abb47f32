"""The git state of the code that runs: commit, branch, whether the tree was dirty and a hash of the diff."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A SageMaker job runs a copy of the source without .git: the launcher passes the state in these variables.
COMMIT_VAR = "DOGBREED_GIT_COMMIT"
DIRTY_VAR = "DOGBREED_GIT_DIRTY"
DIFF_VAR = "DOGBREED_GIT_DIFF_SHA256"
# Enough untracked names to see what was there without flooding the manifest.
MAX_UNTRACKED_LISTED = 50


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, timeout=60, check=False)


def git_state(directory: str | Path, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The checkout holding `directory`, or {"git": False, "reason": ...} when there is none.

    `diff_sha256` hashes `git diff HEAD` (staged and unstaged changes of tracked files); untracked files
    are listed by name, as their content may be large data or outputs.
    """
    directory = Path(directory)
    try:
        top = _git(directory, "rev-parse", "--show-toplevel")
    except FileNotFoundError:
        return _from_launcher(environ) or {"git": False, "reason": "git is not installed"}
    if top.returncode != 0:
        reason = top.stderr.decode(errors="replace").strip().splitlines()
        return _from_launcher(environ) or {
            "git": False,
            "reason": f"not a git checkout ({reason[-1] if reason else 'git rev-parse failed'})",
        }
    head = _git(directory, "rev-parse", "HEAD")
    if head.returncode != 0:
        return {"git": True, "commit": None, "reason": "the repository has no commit yet"}
    status = _git(directory, "status", "--porcelain", "--untracked-files=all").stdout.decode(errors="replace")
    untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
    diff = _git(directory, "diff", "HEAD", "--binary").stdout
    branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD").stdout.decode().strip()
    return {
        "git": True,
        "commit": head.stdout.decode().strip(),
        "branch": None if branch == "HEAD" else branch,  # a detached HEAD has no branch
        "dirty": bool(status.strip()),
        "diff_sha256": hashlib.sha256(diff).hexdigest() if diff else None,
        "untracked": untracked[:MAX_UNTRACKED_LISTED],
        "untracked_count": len(untracked),
    }


def _from_launcher(environ: Mapping[str, str]) -> dict[str, Any] | None:
    commit = environ.get(COMMIT_VAR)
    if not commit:
        return None
    return {
        "git": True,
        "commit": commit,
        "dirty": environ.get(DIRTY_VAR, "").lower() == "true",
        "diff_sha256": environ.get(DIFF_VAR) or None,
        "source": "the launcher (this copy of the code has no .git)",
    }


def launcher_environment(state: Mapping[str, Any]) -> dict[str, str]:
    """The variables that carry `state` into a job whose copy of the code has no .git."""
    if not state.get("commit"):
        return {}
    env = {COMMIT_VAR: str(state["commit"]), DIRTY_VAR: str(bool(state.get("dirty"))).lower()}
    if state.get("diff_sha256"):
        env[DIFF_VAR] = str(state["diff_sha256"])
    return env


def describe(state: Mapping[str, Any]) -> str:
    """'3f2a1b0c9d8e (dirty, diff 1a2b3c4d5e6f)' or why there is no commit."""
    if not state.get("commit"):
        return state.get("reason") or "no git commit"
    text = str(state["commit"])[:12]
    if state.get("dirty"):
        diff = f", diff {str(state['diff_sha256'])[:12]}" if state.get("diff_sha256") else ""
        text += f" (dirty{diff})"
    return text
