"""Project set-up helpers: a starter registry (`init`) and a stable cache key for CI (`cache-key`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from modelctl.core.atomic import replace_text
from modelctl.core.errors import ConfigurationError, command, write_error
from modelctl.core.registry import PLATFORM, REGISTRY_NAME, ROOT_KINDS, Registry

STARTER = """\
# modelctl registry: the models this project uses.
# Every key is checked; run `modelctl list` to see the models and where they are.
# Relative paths are relative to this file's folder.

storage:
  # user: ~/.local/share/modelctl   # default (platformdirs); MODELCTL_HOME wins
  project: models                   # ./models/<model folder>/
  legacy: checkpoints               # an older layout, still searched

verify: sha256                      # none | size | sha256: what `download` and `verify` check

models:
  - id: smollm2-135m                # lower-case letters, digits, . _ -
    repo_id: HuggingFaceTB/SmolLM2-135M-Instruct
    revision: main                  # a branch, tag or commit (`modelctl lock` pins commits)
    family: smollm2
    size: 135m                      # select with --size 135m
    required: true                  # false: optional (its absence only degrades health)
    files: ["*.json", "model.safetensors", "merges.txt"]   # globs; omit for every file
    # local_dir: SmolLM2-135M-Instruct                      # folder name, default: the id
    # checksums: {model.safetensors: "sha256:<hex>"}      # pins; `modelctl checksum FILE`
    description: A small text model
"""


@dataclass(frozen=True)
class InitResult:
    registry: Path
    gitignore: Path
    added_lines: tuple[str, ...]


def init_project(folder: Path, *, force: bool = False) -> InitResult:
    """Write a commented starter models.yaml and the .gitignore lines for its storage roots."""
    registry = folder / REGISTRY_NAME
    if registry.exists() and not force:
        raise ConfigurationError(
            f"{registry} already exists; nothing was changed.",
            hint="Edit it, or run {0} to replace it with the starter.",
            steps=(command("init", "", "force"),),
        )
    _replace(registry, STARTER)
    gitignore = folder / ".gitignore"
    present = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    folders = [f"/{kind.default}/" for kind in ROOT_KINDS if kind.default not in (None, PLATFORM)]
    wanted = ["# model files (modelctl): never commit them", *folders]
    missing = tuple(line for line in wanted if line not in present)
    if missing:
        text = "\n".join(present + ([""] if present and present[-1] else []) + list(missing)) + "\n"
        _replace(gitignore, text)
    return InitResult(registry, gitignore, missing)


def _replace(path: Path, text: str) -> None:
    try:
        replace_text(path, text)
    except OSError as err:
        raise write_error(err, path) from None


def cache_key(registry: Registry) -> str:
    """A short stable hash of what the registry asks for (and of models.lock, when there is one).

    Comments, key order and formatting do not change it; a model, revision, file pattern, pin or
    locked commit does.
    """
    models = [
        {
            "id": m.id,
            "repo_id": m.repo_id,
            "revision": m.revision,
            "files": list(m.files),
            "local_dir": m.folder_name,
            "checksums": {k: str(v) for k, v in sorted(m.checksums.items())},
            **({"urls": sorted(map(list, m.urls))} if m.urls else {}),  # a url model: its files
        }
        for m in registry.models
    ]
    digest = hashlib.sha256(
        json.dumps({"verify": registry.verify, "models": models}, sort_keys=True).encode()
    )
    lock = registry.lock_path
    if not registry.source.is_bundled and lock.is_file():
        digest.update(lock.read_bytes())
    return digest.hexdigest()[:16]
