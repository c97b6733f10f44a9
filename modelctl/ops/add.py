"""`modelctl add`: check a repo on the Hub and append a validated entry to models.yaml.

The file is edited as text, never re-dumped: its comments, order and quoting stay as written and
only the new entry's lines are added at the end of the `models:` list. The new text is validated
(as load_registry would) before it is written, and the written file is loaded again afterwards;
if that fails, the original text is put back.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from modelctl.core.atomic import replace_text
from modelctl.core.errors import (
    ConfigurationError,
    MissingModelError,
    UsageError,
    command,
    option,
    write_error,
)
from modelctl.core.record import RepoFile, Snapshot
from modelctl.core.registry import ModelSpec, Registry, load_registry, parse_registry
from modelctl.core.retry import retry_call
from modelctl.core.settings import DownloadOptions
from modelctl.fetch.download import DownloadEvents, DownloadReport, check_listing, hub_access_for
from modelctl.net.hub import fetch_snapshot, retry_reason
from modelctl.store.workspace import Workspace

_PLAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


@dataclass(frozen=True)
class AddResult:
    """The entry added: its spec as the registry now reads it, and what the Hub lists for it."""

    registry: Registry  # the registry loaded again after the write
    spec: ModelSpec
    commit: str
    files: tuple[RepoFile, ...]  # the commit's files the entry selects

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class AddReport:
    """What `add` did: the entry added, and the download `--download` ran (None: none, or not yet)."""

    added: AddResult
    download: DownloadReport | None = None
    downloading: bool = False  # a download follows: the table names no next step


def derive_id(repo_id: str) -> str:
    """A model id from a repo id: its name, lower-case, with characters ids may not hold made '-'."""
    name = repo_id.rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9._-]+", "-", name).strip("-._")[:64]


def add_model(
    workspace: Workspace,
    repo_id: str,
    options: DownloadOptions,
    events: DownloadEvents,
    *,
    model_id: str | None = None,
    size: str | None = None,
    files: Sequence[str] = (),
    revision: str | None = None,
) -> AddResult:
    """Check repo_id (at revision) on the Hub, then append its entry to the registry's `models:`."""
    registry = workspace.registry
    path = registry.path
    if registry.source.is_bundled:
        raise ConfigurationError(
            f"No models.yaml here: the registry in use is the one bundled with modelctl ({path}), "
            "which is not edited.",
            hint="Run {0} to write a models.yaml in this folder, or pass {1}.",
            steps=(command("init"), option("config", "PATH")),
        )
    chosen = _new_id(registry, repo_id, model_id)
    original = _read(path)
    entry = {"id": chosen, "repo_id": repo_id}
    if revision is not None:
        entry["revision"] = revision
    if size is not None:
        entry["size"] = size.lower()
    text = append_entry(original, entry, tuple(files), path)
    spec = _validated(text, registry, chosen)

    snapshot = _snapshot(workspace, spec, options, events)
    check_listing(snapshot, "nothing was added")
    selected = _selected(spec, snapshot.files, snapshot.commit)

    if _read(path) != original:
        raise ConfigurationError(
            f"{path} changed while modelctl was checking {repo_id} on the Hub; nothing was added.",
            hint="Run the same {0} again.",
            steps=(command("add"),),
        )
    _write(path, text)
    try:
        reloaded = load_registry(path)
        added = reloaded.get(chosen)
    except (ConfigurationError, MissingModelError) as err:
        _write(path, original)
        raise ConfigurationError(
            f"{path} did not load after adding {chosen}, so its original text was restored: {err.message}",
            hint="Add the entry by hand; docs/registry.md lists every key.",
        ) from err
    return AddResult(reloaded._replace(source=registry.source), added, snapshot.commit, selected)


# --------------------------------------------------------------------------- the text edit


def _new_id(registry: Registry, repo_id: str, model_id: str | None) -> str:
    """The id the new entry gets: the one given, else derived from the repo; not one taken."""
    chosen = model_id if model_id is not None else derive_id(repo_id)
    if not chosen:
        raise UsageError(
            f"Cannot derive a model id from '{repo_id}'.",
            hint="Give one with {0} (e.g. {1}).",
            steps=(option("id", "NAME"), option("id", "my-model")),
        )
    taken = next((m for m in registry.models if m.id == chosen), None)
    if taken is not None:
        raise ConfigurationError(
            f"Model id '{chosen}' is already in {registry.path} (line {taken.line}, repo {taken.repo_id}); "
            "nothing was added.",
            hint="Choose another id with {0}, or see the entry with {1}.",
            steps=(option("id", "NAME"), command("info", chosen)),
        )
    return chosen


def append_entry(text: str, entry: dict[str, str], files: tuple[str, ...], path: Path) -> str:
    """text with one more item at the end of its `models:` list, in the list's own style."""
    root = _compose(text, path)
    models = None
    if isinstance(root, yaml.MappingNode):
        models = next((v for k, v in root.value if k.value == "models"), None)
    if not isinstance(models, yaml.SequenceNode):
        raise ConfigurationError(
            f"{path} has no `models:` list to add to; nothing was added.",
            hint="Start one with `models: []` (or run {0} in an empty folder).",
            steps=(command("init"),),
        )
    pairs = [(key, _scalar(value)) for key, value in entry.items()]
    if files:
        pairs.append(("files", "[" + ", ".join(json.dumps(p) for p in files) + "]"))
    if models.flow_style or not models.value:  # models: [...]: one more flow mapping before the ']'
        close = models.end_mark.index - 1
        if text[close] != "]":
            raise ConfigurationError(f"{path}: cannot find the end of the `models:` list; nothing was added.")
        before = text[:close].rstrip()
        sep = "" if before.endswith(("[", ",")) else ", "
        item = "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        return before + sep + item + text[close:]
    last = models.value[-1]
    line_start = text.rfind("\n", 0, last.start_mark.index) + 1
    head = text[line_start : last.start_mark.index]
    dash = head.rstrip()
    if not dash.endswith("-"):
        raise ConfigurationError(f"{path}: cannot find the `-` of the last model; nothing was added.")
    dash_col = len(dash) - 1
    key_col = last.start_mark.column
    lines = [f"{' ' * dash_col}-{' ' * (key_col - dash_col - 1)}{pairs[0][0]}: {pairs[0][1]}"]
    lines += [f"{' ' * key_col}{key}: {value}" for key, value in pairs[1:]]
    newline = "\r\n" if "\r\n" in text else "\n"
    at = _after(text, _last_leaf(last).end_mark)
    prefix = "" if at == 0 or text[at - 1] == "\n" else newline
    return text[:at] + prefix + newline.join(lines) + newline + text[at:]


def _compose(text: str, path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:  # load_registry accepted it: only a file changed meanwhile gets here
        raise ConfigurationError(f"{path}: YAML error: {err}") from err


def _last_leaf(node: yaml.Node) -> yaml.Node:
    """The node whose end is the end of node's text (a block collection ends after its comments)."""
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    return node


def _after(text: str, mark: yaml.Mark) -> int:
    """The start of the line after the one mark ends on (a mark at a line's start is already there)."""
    if mark.column == 0:
        return mark.index
    end = text.find("\n", mark.index)
    return len(text) if end < 0 else end + 1


def _scalar(value: str) -> str:
    """value as YAML: plain when it reads back as the same string, else double-quoted (JSON is YAML)."""
    if _PLAIN_RE.match(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _validated(text: str, registry: Registry, model_id: str) -> ModelSpec:
    """The new entry's spec, from the whole new text validated as load_registry would."""
    try:
        parsed = parse_registry(text, registry.source, base_dir=registry.path.parent)
    except ConfigurationError as err:
        raise ConfigurationError(
            f"The entry for {model_id} would not be valid; nothing was added:\n{err.message}",
            hint=err.hint,
        ) from err
    return parsed.get(model_id)


# --------------------------------------------------------------------------- the Hub


def _snapshot(
    workspace: Workspace, spec: ModelSpec, options: DownloadOptions, events: DownloadEvents
) -> Snapshot:
    access = hub_access_for(workspace, options)
    again = command("add", spec.repo_id)

    def fetch(attempt: int, target: int) -> Snapshot:
        return fetch_snapshot(access, spec.repo_id, spec.revision, command=again)

    def on_retry(attempt: int, delay: float, reason: str, target: int) -> None:
        events.metadata_retry(spec.repo_id, attempt, delay, reason)

    try:
        return retry_call(fetch, options.policy, retry_on=retry_reason, on_retry=on_retry)
    except MissingModelError as err:
        raise MissingModelError(
            f"{err.message} Nothing was added.",
            hint="Check the repo id (namespace/name, as on its Hub page) and {0}.",
            steps=(option("revision"),),
        ) from err


def _selected(spec: ModelSpec, listed: Sequence[RepoFile], commit: str) -> tuple[RepoFile, ...]:
    """The commit's files the entry selects; every pattern must match at least one."""
    unmatched = [p for p in spec.files if not any(fnmatch.fnmatchcase(f.path, p) for f in listed)]
    if unmatched:
        names = ", ".join(f.path for f in listed[:12]) + (", …" if len(listed) > 12 else "")
        raise MissingModelError(
            f"No file of {spec.repo_id}@{commit[:12]} matches {', '.join(unmatched)}; nothing was added.",
            hint=f"Its files: {names}.",
        )
    if not spec.files:
        return tuple(listed)
    return tuple(f for f in listed if any(fnmatch.fnmatchcase(f.path, p) for p in spec.files))


# --------------------------------------------------------------------------- the file


def _read(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", newline="") as handle:  # keep \r\n as it is
            return handle.read()
    except OSError as err:
        raise ConfigurationError(f"Cannot read registry {path}: {err}") from err


def _write(path: Path, text: str) -> None:
    """Replace the file's text at once, through a symlink (a crash leaves the old or the new file)."""
    try:
        replace_text(path, text)
    except OSError as err:
        raise write_error(err, path, "the registry") from None
