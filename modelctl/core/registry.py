"""The registry: which models.yaml is used, and its contents as frozen, validated specs.

Validation is hand-written over PyYAML's node tree rather than done by a schema library because
every message must carry the file's line number and the key's path ("models.yaml:14:
models[2].sise: unknown key (did you mean 'size'?)"), and that information lives only on the
nodes; it also keeps pydantic/jsonschema out of the start-up path of `modelctl list`.

Records on that path (here, storage.py, manager.py) are immutable NamedTuples rather than frozen
dataclasses: defining a frozen dataclass costs ~0.5 ms at import, a NamedTuple ~0.07 ms, and
`modelctl list` has a start-up budget (bench/startup). Modules `list` does not import use dataclasses.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import yaml

from modelctl.core.errors import ConfigurationError, MissingModelError, UsageError, command, option
from modelctl.core.hashing import ALGORITHMS, Checksum, parse_checksum

REGISTRY_NAME = "models.yaml"
MINIMAL_NAME = "models.minimal.yaml"
VERIFY_LEVELS = ("none", "size", "sha256")
TRUE_WORDS = ("1", "true", "yes")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SIZE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FOLDER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._ +-]*$")

_TOP_KEYS = ("storage", "verify", "models", "endpoints", "cache_dir", "download")
_DOWNLOAD_KEYS = ("connections", "to")
_ENDPOINT_KEYS = ("url", "token")
_URL_RE = re.compile(r"^https?://[^/\s]+(/\S*)?$")
HF_HOST = "huggingface.co"
_MODEL_KEYS = (
    "id",
    "repo_id",
    "revision",
    "family",
    "size",
    "required",
    "files",
    "local_dir",
    "checksums",
    "description",
    "url",
)
_URL_FILE_KEYS = ("url", "path", "sha256", "size")
_SHA256_RE = re.compile(r"^(sha256:)?[0-9a-fA-F]{64}$")
URL_REVISION = "url"  # the revision a url model's record names


class UrlFile(NamedTuple):
    """One file of a url model: fetched from a plain URL (not the Hub), pinned by its sha256."""

    url: str
    path: str  # where it lands in the model folder
    sha256: str  # lower-case hex
    size: int | None = None  # None: asked of the server (HEAD) when planning


class ModelSpec(NamedTuple):
    """One model of the registry: a Hub repo, or (with `urls`) files at plain URLs."""

    id: str
    repo_id: str
    revision: str = "main"
    family: str | None = None
    size: str | None = None
    required: bool = True
    files: tuple[str, ...] = ()
    local_dir: str | None = None
    checksums: Mapping[str, Checksum] = MappingProxyType({})
    description: str | None = None
    line: int = 0
    urls: tuple[UrlFile, ...] = ()  # a url model: repo_id is "url:<id>", revision "url"

    @property
    def is_url(self) -> bool:
        return bool(self.urls)

    @property
    def folder_name(self) -> str:
        """The folder under a storage root that holds this model's files."""
        return self.local_dir or self.id


class Endpoint(NamedTuple):
    """One entry of `endpoints:`: a Hub URL and whether the Hub token may be sent to its host."""

    url: str
    is_token_sent: bool


class RootKind(NamedTuple):
    """One kind of storage root: everything that differs between them, in one row of ROOT_KINDS."""

    name: str  # the key under `storage:`, `--to`/`--root` value, `root` in --json
    variable: str | None  # the environment variable that sets its path (wins over the registry)
    default: str | None  # its folder beside the registry when `storage:` does not say; PLATFORM:
    # the platform's data dir for modelctl (platformdirs), None: no root unless configured
    is_writable: bool  # False: searched and verified like the others, never written (a fleet's share)
    is_machines: bool  # the machine's, shared by every project: folders named from the repo
    # (`org--name`), `clean` and `du --unnamed` leave it alone unless `--root` names it


PLATFORM = ":platform:"  # RootKind.default: the user's data dir for modelctl, by platformdirs

# The roots in precedence order. A new kind of root is a new row.
ROOT_KINDS = (
    RootKind("user", "MODELCTL_HOME", PLATFORM, is_writable=True, is_machines=True),
    RootKind("shared", None, None, is_writable=False, is_machines=False),
    RootKind("project", None, "models", is_writable=True, is_machines=False),
    RootKind("legacy", None, "checkpoints", is_writable=True, is_machines=False),
)
ROOT_KIND = {kind.name: kind for kind in ROOT_KINDS}
_STORAGE_KEYS = tuple(kind.name for kind in ROOT_KINDS)
_DOWNLOAD_ROOTS = tuple(kind.name for kind in ROOT_KINDS if kind.is_writable)  # `download: to:`


class StorageConfig(NamedTuple):
    """Storage roots as the registry sets them: the name of each ROOT_KINDS row → its absolute
    path, or None (the machine's root: the platform's data dir; a kind with no default: none)."""

    paths: Mapping[str, Path | None]

    @classmethod
    def beside(cls, base: Path, **paths: Path | None) -> StorageConfig:
        """The roots of a registry in folder `base`: each path given, else its kind's default
        folder under base (`models/`, `checkpoints/`), else None."""
        unknown = set(paths) - set(ROOT_KIND)
        if unknown:
            raise ValueError(f"no storage root kind {', '.join(sorted(unknown))}")
        defaults = {kind.name: _beside(base, kind.default) for kind in ROOT_KINDS}
        return cls({name: paths.get(name) or default for name, default in defaults.items()})

    def with_paths(self, **paths: Path | None) -> StorageConfig:
        """The same roots but these."""
        return StorageConfig({**self.paths, **paths})

    def path_of(self, name: str, environ: Mapping[str, str] | None = None) -> Path | None:
        """The path of the root of that kind: its variable (MODELCTL_HOME) > `storage:` in the
        registry > the platform's user data dir for the user root; None for a shared store the
        registry does not configure."""
        kind = ROOT_KIND[name]
        env = os.environ if environ is None else environ
        if kind.variable and env.get(kind.variable):
            return Path(env[kind.variable]).expanduser().absolute()
        configured = self.paths.get(name)
        if configured is not None or kind.default != PLATFORM:
            return configured
        import platformdirs  # imported here: resolving it is only needed when no path is given

        return Path(platformdirs.user_data_dir("modelctl", appauthor=False))

    def user_path(self, environ: Mapping[str, str] | None = None) -> Path:
        """The user root (see path_of)."""
        path = self.path_of("user", environ)
        assert path is not None  # the machine's root always has one
        return path


def _beside(base: Path, default: str | None) -> Path | None:
    """A kind's default folder beside the registry; None for the platform's dir (resolved late) or none."""
    return base / default if default is not None and default != PLATFORM else None


class RegistrySource(NamedTuple):
    """Which registry file is in use and why it was chosen."""

    path: Path
    reason: str  # "--config", "MODELCTL_CONFIG", "CI_MINIMAL_MODELS", "found", "bundled"

    @property
    def is_bundled(self) -> bool:
        return self.path.parent == bundled_registry().parent


class Registry(NamedTuple):
    """A validated models.yaml."""

    source: RegistrySource
    storage: StorageConfig
    verify: str
    models: tuple[ModelSpec, ...]
    endpoints: tuple[Endpoint, ...] = ()  # Hub URLs tried in order (a mirror first, then the Hub)
    connections: int | None = None  # `download: connections:`, the run's connection budget
    download_to: str | None = None  # `download: to:` (or `cache_dir:`): the root new downloads go to

    @property
    def cache_dir(self) -> Path:
        """Where new downloads go: the root `download: to:` names (`cache_dir:` sets the project
        root and names it), else the user root, the first writable one (seed 003's `cache_dir`)."""
        path = self.storage.path_of(self.download_to or ROOT_KINDS[0].name)
        assert path is not None  # `download: to:` names a writable root, which always has a path
        return path

    @property
    def path(self) -> Path:
        return self.source.path

    @property
    def lock_path(self) -> Path:
        """This registry's lock: models.yaml → models.lock, models.minimal.yaml → models.minimal.lock.

        One lock per registry: a CI job on the minimal set checks and writes only its own lock.
        """
        path = self.source.path
        return (
            path.with_suffix(".lock")
            if path.suffix in (".yaml", ".yml")
            else path.with_name(path.name + ".lock")
        )

    @property
    def sizes(self) -> tuple[str, ...]:
        """Size variants in registry order, without repeats."""
        return tuple(dict.fromkeys(m.size for m in self.models if m.size))

    def get(self, model_id: str) -> ModelSpec:
        """Return the spec with this id, or the one entry with this repo_id; MissingModelError otherwise.

        A repo_id is what users copy from the Hub (`modelctl download apple/FastVLM-0.5B`).
        """
        for spec in self.models:
            if spec.id == model_id:
                return spec
        if "/" in model_id:
            return self._by_repo_id(model_id)
        ids = [m.id for m in self.models]
        close = difflib.get_close_matches(model_id, ids, n=3, cutoff=0.5)
        suggestion = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise MissingModelError(
            f"Unknown model id '{model_id}' in {self.path}.{suggestion}",
            hint="Run {0} to see every model id in the registry.",
            steps=(command("list"),),
            api_hint="ModelManager.config.models lists every model of the registry.",
        )

    def _by_repo_id(self, repo_id: str) -> ModelSpec:
        """The one entry whose repo_id is this (case-insensitive, as the Hub resolves it)."""
        named = [m for m in self.models if m.repo_id.casefold() == repo_id.casefold()]
        if len(named) == 1:
            return named[0]
        if named:
            ids = ", ".join(m.id for m in named)
            raise UsageError(
                f"'{repo_id}' is the repo_id of {len(named)} models in {self.path}: {ids}.",
                hint=f"Name one of them by its id: {ids}.",
            )
        example = repo_id.rsplit("/", 1)[-1].lower()
        example = re.sub(r"[^a-z0-9._-]+", "-", example).strip("-._")[:64] or "my-model"
        raise MissingModelError(
            f"'{repo_id}' is not in the registry {self.path}: no model has that repo_id.",
            hint=f"Run {{0}} to check it on the Hub and add it to the registry, "
            f"or add an entry under `models:` in {self.path} yourself, e.g.\n"
            f"  - id: {example}\n    repo_id: {repo_id}\n"
            f"then run the command again with that id or repo_id.",
            steps=(command("add", repo_id),),
        )

    def select(
        self, ids: Sequence[str] = (), size: str | None = None, everything: bool = False
    ) -> tuple[ModelSpec, ...]:
        """Models named by id and/or size variant ("all" = every model); nothing named → all."""
        if everything or (size or "").lower() == "all" or (not ids and size is None):
            return self.models
        chosen = {spec.id: spec for spec in (self.get(i) for i in ids)}
        if size is not None:
            wanted = size.lower()
            matching = [m for m in self.models if m.size == wanted]
            if not matching:
                known = ", ".join(self.sizes) or "none"
                raise MissingModelError(
                    f"No model in {self.path} has size variant '{size}'.",
                    hint=f"Size variants in this registry: {known}, or 'all'.",
                )
            chosen.update((m.id, m) for m in matching)
        return tuple(m for m in self.models if m.id in chosen)


ModelsConfig = Registry  # seed 003's name for the loaded registry (`.models`, `.cache_dir`, `.verify`)

# --------------------------------------------------------------------------- selection


def bundled_registry() -> Path:
    """The default registry shipped inside the package."""
    return Path(__file__).parents[1] / "data" / REGISTRY_NAME


def find_registry(
    config: Path | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> RegistrySource:
    """Choose the registry: --config > MODELCTL_CONFIG > models.yaml in the cwd or a parent > bundled.

    CI_MINIMAL_MODELS then swaps the chosen file for models.minimal.yaml beside it (seed 003 keeps
    both in config/model_manager/ and names the full one with --config). With nothing chosen but
    the bundled registry, or no minimal file there, it is an error naming where it looked: a CI
    job that asked for its minimal set must never get another set.
    """
    env = os.environ if environ is None else environ
    # The working directory is looked up only when needed: an absolute --config or MODELCTL_CONFIG
    # works even from a directory deleted under the shell.
    if config is not None:
        chosen = _existing(RegistrySource(_absolute(config, cwd), "--config"))
    elif env.get("MODELCTL_CONFIG"):
        chosen = _existing(RegistrySource(_absolute(Path(env["MODELCTL_CONFIG"]), cwd), "MODELCTL_CONFIG"))
    else:
        found = _search_parents(current_dir(cwd))
        chosen = RegistrySource(found, "found") if found else RegistrySource(bundled_registry(), "bundled")
    if env.get("CI_MINIMAL_MODELS", "").strip().lower() not in TRUE_WORDS or chosen.path.name == MINIMAL_NAME:
        return chosen
    if chosen.is_bundled:
        raise ConfigurationError(
            f"CI_MINIMAL_MODELS is set but no {REGISTRY_NAME} was found in {current_dir(cwd)} or any "
            "parent folder (and the bundled registry is not a project's).",
            hint="Run in the project's folder, pass {0} (the minimal file is looked for beside it), "
            "or unset CI_MINIMAL_MODELS.",
            steps=(option("config", f"path/to/{REGISTRY_NAME}"),),
        )
    minimal = chosen.path.with_name(MINIMAL_NAME)
    if not minimal.is_file():
        raise ConfigurationError(
            f"CI_MINIMAL_MODELS is set but {minimal} does not exist "
            f"(it is looked for beside {chosen.path}, from {chosen.reason}).",
            hint=f"Create {MINIMAL_NAME} beside {chosen.path.name}, or unset CI_MINIMAL_MODELS.",
        )
    return RegistrySource(minimal, "CI_MINIMAL_MODELS")


def _absolute(path: Path, cwd: Path | None) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else current_dir(cwd) / path


def current_dir(cwd: Path | None = None) -> Path:
    """cwd if given, else the working directory, which may have been deleted under the shell."""
    if cwd is not None:
        return cwd
    try:
        return Path.cwd()
    except FileNotFoundError as err:
        raise ConfigurationError(
            "The current directory no longer exists (it was deleted after the shell entered it).",
            hint=f"cd to an existing folder (the project's, for its {REGISTRY_NAME}); to use a registry "
            "from anywhere, give an absolute {0} or MODELCTL_CONFIG.",
            steps=(option("config"),),
        ) from err


def _existing(source: RegistrySource) -> RegistrySource:
    if not source.path.is_file():
        raise ConfigurationError(
            f"Registry file {source.path} (from {source.reason}) does not exist or is not a file.",
            hint="Check the path, or run without {0}/MODELCTL_CONFIG to use ./models.yaml.",
            steps=(option("config"),),
            api_hint="Check the path given (or MODELCTL_CONFIG); without one, ./models.yaml or a parent's is used.",
        )
    return source


def _search_parents(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / REGISTRY_NAME
        if candidate.is_file():
            return candidate
    return None


def load_registry(
    config: Path | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Registry:
    """Find the registry as find_registry does, read it and validate every key."""
    source = find_registry(config, cwd=cwd, environ=environ)
    try:
        size = source.path.stat().st_size
        if size > MAX_REGISTRY_BYTES:
            raise ConfigurationError(
                f"Registry {source.path} is {size:,} bytes, more than the {MAX_REGISTRY_BYTES:,} a registry may be.",
                hint="Check that {0} / MODELCTL_CONFIG names the registry (models.yaml), not another file.",
                steps=(option("config"),),
            )
        text = source.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigurationError(
            f"Cannot read registry {source.path}: {err}",
            hint="Check the file's permissions and that it is UTF-8 text.",
        ) from err
    # Relative storage paths are relative to the registry's folder, except for the bundled
    # registry, whose folder is inside site-packages: there they are relative to the cwd.
    base = current_dir(cwd) if source.is_bundled else source.path.parent
    return parse_registry(text, source, base_dir=base)


# --------------------------------------------------------------------------- validation


def revision_problem(revision: str) -> str | None:
    """Why revision cannot be a git branch, tag or commit (a space, a control character), or None."""
    if not revision.strip():
        return "is empty"
    if any(ch.isspace() or not ch.isprintable() for ch in revision):
        return f"{revision!r} holds a space or a control character: no branch, tag or commit does"
    return None


class _Problems:
    """Collects 'file:line: key: problem' lines so that one run reports every mistake."""

    def __init__(self, path: Path, lines: Mapping[str, int]) -> None:
        self.path = path
        self.lines = lines
        self.items: list[str] = []
        self.hints: list[str] = []

    def add(self, key: str, problem: str, hint: str | None = None) -> None:
        line = self.lines.get(key, 0)
        where = f"{self.path}:{line}" if line else str(self.path)
        self.items.append(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")
        if hint and hint not in self.hints:
            self.hints.append(hint)

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigurationError(
                "\n".join(self.items),
                hint=" ".join(self.hints) or ConfigurationError.default_hint,
            )


def _loader_class() -> Any:
    # libyaml's parser is ~10x faster than the pure-Python one; both give line marks.
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# A registry's aliases (`&files` … `*files`) repeat a few lists; nested ones multiply: 8 levels of
# 9 aliases in 429 bytes expand to 43 million nodes, which every walk of the document would visit.
ALIAS_EXPANSION = 20  # expanded nodes per node written, at most (beyond a small allowance)
MAX_REGISTRY_BYTES = 4 << 20  # ~20,000 entries; a larger file is refused before it is parsed


def _refuse_alias_bomb(root: yaml.Node, path: Path) -> None:
    """Refuse a document whose aliases expand far beyond its size; stops counting at the bound."""
    written: set[int] = set()
    stack = [root]
    while stack:  # the nodes as written: each once
        node = stack.pop()
        if id(node) not in written:
            written.add(id(node))
            stack.extend(_children(node))
    bound = ALIAS_EXPANSION * len(written) + 10_000
    seen, stack = 0, [root]
    while stack:  # the nodes as every walk would visit them: aliases expanded
        seen += 1
        if seen > bound:
            raise ConfigurationError(
                f"{path}: its YAML aliases expand to more than {bound:,} nodes from {len(written):,} "
                "written (an alias bomb?); refused before reading it.",
                hint="Write the repeated lists out, or use aliases that do not nest inside each other.",
            )
        stack.extend(_children(stack.pop()))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _node_lines(node: yaml.Node, path: str, lines: dict[str, int], dup: list[tuple[str, int]]) -> None:
    """Record the 1-based line of every key path ("models[2].size") under node."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in seen:
                dup.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _node_lines(value_node, child, lines, dup)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            lines[child] = item.start_mark.line + 1
            _node_lines(item, child, lines, dup)


def parse_registry(text: str, source: RegistrySource, base_dir: Path) -> Registry:
    """Validate registry text; raise ConfigurationError listing every problem with its line."""
    path = source.path
    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_alias_bomb(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark else ""
        context = ""
        if err.context and err.context_mark and err.context_mark is not mark:
            context = f" ({err.context} started at line {err.context_mark.line + 1})"
        raise ConfigurationError(
            f"{path}{line}: YAML syntax error: {err.problem or err}{context}",
            hint="Fix the YAML syntax there (indentation, a missing ':', quote or closing bracket).",
        ) from err
    except yaml.YAMLError as err:
        raise ConfigurationError(f"{path}: YAML error: {err}") from err
    finally:
        loader.dispose()

    lines: dict[str, int] = {}
    duplicates: list[tuple[str, int]] = []
    if node is not None:
        _node_lines(node, "", lines, duplicates)
    problems = _Problems(path, lines)
    for key, _line in duplicates:
        problems.add(key, "key appears twice in the same mapping", "Remove the repeated key.")

    if data is None:
        problems.add("", "the registry is empty; it needs at least a 'models:' list")
        problems.raise_if_any()
    if not isinstance(data, dict):
        problems.add("", f"expected a mapping with keys {', '.join(_TOP_KEYS[:3])}, got {_kind(data)}")
        problems.raise_if_any()
    assert isinstance(data, dict)

    _check_keys(problems, "", data, _TOP_KEYS)
    storage = _parse_storage(problems, data, base_dir)
    verify = data.get("verify", "sha256")
    if verify not in VERIFY_LEVELS:
        problems.add("verify", f"must be one of {', '.join(VERIFY_LEVELS)}, got {verify!r}")
    models = _parse_models(problems, data.get("models"))
    endpoints = _parse_endpoints(problems, data.get("endpoints"))
    connections, download_to = _parse_download(problems, data.get("download"))
    if download_to is None and data.get("cache_dir"):  # seed 003: downloads go to its cache_dir
        download_to = "project"
    problems.raise_if_any()
    return Registry(
        source=source,
        storage=storage,
        verify=str(verify),
        models=models,
        endpoints=endpoints,
        connections=connections,
        download_to=download_to,
    )


def _parse_download(problems: _Problems, raw: Any) -> tuple[int | None, str | None]:
    """`download: {connections: N, to: ROOT}`: how many connections a run opens at once (1 to
    64), and the root new downloads go to (user, project or legacy; default: the first writable)."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        problems.add(
            "download", f"expected a mapping such as {{connections: 8, to: project}}, got {_kind(raw)}"
        )
        return None, None
    _check_keys(problems, "download", raw, _DOWNLOAD_KEYS)
    to = raw.get("to")
    if to is not None and to not in _DOWNLOAD_ROOTS:
        problems.add("download.to", f"expected one of {', '.join(_DOWNLOAD_ROOTS)}, got {to!r}")
        to = None
    value = raw.get("connections")
    if value is None:
        return None, to
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        problems.add("download.connections", f"expected a whole number from 1 to 64, got {value!r}")
        return None, to
    return value, to


def _parse_endpoints(problems: _Problems, raw: Any) -> tuple[Endpoint, ...]:
    """Each entry: a URL, or {url: URL, token: true|false}; the token defaults to https Hugging Face hosts."""
    if raw is None:
        return ()
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list):
        problems.add("endpoints", f"expected a list of Hub URLs, got {_kind(raw)}")
        return ()
    out = []
    for index, item in enumerate(raw):
        where = f"endpoints[{index}]"
        url_key, url, sends = where, item, None
        if isinstance(item, dict):
            _check_keys(problems, where, item, _ENDPOINT_KEYS)
            sends = item.get("token")
            if sends is not None and not isinstance(sends, bool):
                problems.add(f"{where}.token", f"expected true or false, got {_kind(sends)}")
            if "url" not in item:
                problems.add(where, "missing required key 'url'")
                continue
            url_key, url = f"{where}.url", item["url"]
        elif not isinstance(item, str):
            problems.add(
                where, f"expected a URL or a mapping {{url: ..., token: true|false}}, got {_kind(item)}"
            )
            continue
        text = _string(problems, url_key, url)
        if text is not None and not _URL_RE.match(text):
            problems.add(url_key, f"'{text}' is not an http(s) URL, e.g. http://mirror:8090")
        elif text is not None:
            url = text.rstrip("/")
            out.append(Endpoint(url, _is_hf_host(url) if sends is None else sends))
    return tuple(out)


def _is_hf_host(url: str) -> bool:
    """huggingface.co or a subdomain of it, over https: the one host the token is meant for."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # e.g. an unclosed IPv6 bracket: not the Hub, and hub.py reports it
        return False
    return parts.scheme == "https" and (host == HF_HOST or host.endswith("." + HF_HOST))


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "true/false", type(None): "nothing"}
    for typ, name in names.items():
        if type(value) is typ:
            return name
    return f"{type(value).__name__} {value!r}"


def _check_keys(problems: _Problems, where: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in data:
        if key in allowed:
            continue
        name = f"{where}.{key}" if where else str(key)
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        detail = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
        problems.add(
            name,
            f"unknown key ({detail})",
            f"Allowed keys{' in ' + where if where else ''}: {', '.join(allowed)}.",
        )


def _string(problems: _Problems, key: str, value: Any, *, allow_empty: bool = False) -> str | None:
    if isinstance(value, str) and (allow_empty or value.strip()):
        return value
    if isinstance(value, str):
        problems.add(key, "must not be empty")
    else:
        problems.add(
            key, f"expected a string, got {_kind(value)}", 'Quote values such as versions or ids: "7b".'
        )
    return None


def _parse_storage(problems: _Problems, data: Mapping[str, Any], base: Path) -> StorageConfig:
    raw = data.get("storage", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.add("storage", f"expected a mapping with keys {', '.join(_STORAGE_KEYS)}, got {_kind(raw)}")
        raw = {}
    _check_keys(problems, "storage", raw, _STORAGE_KEYS)
    values: dict[str, Path | None] = {}
    for key in _STORAGE_KEYS:
        if key in raw:
            text = _string(problems, f"storage.{key}", raw[key])
            values[key] = _absolute(Path(text), base) if text else None
    if "cache_dir" in data:  # the earlier model_manager's spelling of the project root
        if "project" in raw:
            problems.add("cache_dir", "conflicts with storage.project; keep one of them")
        text = _string(problems, "cache_dir", data["cache_dir"])
        values["project"] = _absolute(Path(text), base) if text else None
    return StorageConfig.beside(base, **values)


def _parse_models(problems: _Problems, raw: Any) -> tuple[ModelSpec, ...]:
    if raw is None:
        problems.add("models", "missing: the registry needs a 'models:' list (it may be empty: [])")
        return ()
    if not isinstance(raw, list):
        problems.add("models", f"expected a list of models, got {_kind(raw)}")
        return ()
    specs: list[ModelSpec] = []
    first_line: dict[str, int] = {}
    folders: dict[str, ModelSpec] = {}
    for index, item in enumerate(raw):
        where = f"models[{index}]"
        if not isinstance(item, dict):
            problems.add(where, f"expected a mapping with at least id and repo_id, got {_kind(item)}")
            continue
        spec = _parse_model(problems, where, item)
        if spec is None:
            continue
        if spec.id in first_line:
            problems.add(
                f"{where}.id",
                f"duplicate id '{spec.id}' (first defined at line {first_line[spec.id]})",
                "Every model id must be unique.",
            )
            continue
        first_line[spec.id] = spec.line
        # Two models in one folder of a project root: verifying one would pass the other's files
        # and cleaning one would delete both (case-folded, for case-insensitive filesystems).
        owner = folders.get(spec.folder_name.casefold())
        if owner is not None:
            key = "local_dir" if spec.local_dir else "id"
            problems.add(
                f"{where}.{key}",
                f"'{spec.id}' would share the folder '{spec.folder_name}' with '{owner.id}' "
                f"(line {owner.line}) in the project and legacy roots",
                "Give one of them its own `local_dir:`.",
            )
            continue
        folders[spec.folder_name.casefold()] = spec
        specs.append(spec)
    return tuple(specs)


def _parse_model(problems: _Problems, where: str, item: Mapping[str, Any]) -> ModelSpec | None:
    before = len(problems.items)
    _check_keys(problems, where, item, _MODEL_KEYS)
    if "id" not in item:
        problems.add(where, "missing required key 'id'")
    if "url" in item:
        for key in ("repo_id", "revision", "files", "checksums"):
            if key in item:
                problems.add(
                    f"{where}.{key}",
                    "not allowed with 'url:' (a url model is its listed files, each pinned by its sha256)",
                )
    elif "repo_id" not in item:
        problems.add(where, "missing required key 'repo_id' (or 'url' for files that are not on the Hub)")
    model_id = _check_id(problems, f"{where}.id", item["id"]) if "id" in item else None
    urls = _check_urls(problems, f"{where}.url", item["url"]) if "url" in item else ()
    repo_id = _check_repo_id(problems, f"{where}.repo_id", item["repo_id"]) if "repo_id" in item else None
    if "url" in item and model_id is not None:
        repo_id = f"url:{model_id}"
    revision = _string(problems, f"{where}.revision", item.get("revision", "main"))
    if revision is not None and (problem := revision_problem(revision)):
        problems.add(f"{where}.revision", problem, "Give a branch, tag or commit as the Hub shows it.")
        revision = None
    family = _optional_string(problems, f"{where}.family", item.get("family"))
    description = _optional_string(problems, f"{where}.description", item.get("description"))
    size = _check_size(problems, f"{where}.size", item.get("size"))
    required = item.get("required", True)
    if not isinstance(required, bool):
        problems.add(f"{where}.required", f"expected true or false, got {_kind(required)}")
    files = _check_files(problems, f"{where}.files", item.get("files"))
    local_dir = _check_local_dir(problems, f"{where}.local_dir", item.get("local_dir"))
    checksums = _check_checksums(problems, f"{where}.checksums", item.get("checksums"))
    if len(problems.items) != before or model_id is None or repo_id is None:
        return None
    return ModelSpec(
        id=model_id,
        repo_id=repo_id,
        revision=URL_REVISION if urls else revision or "main",
        family=family,
        size=size,
        required=bool(required),
        files=files,
        local_dir=local_dir,
        checksums=checksums,
        description=description,
        line=problems.lines.get(where, 0),
        urls=urls,
    )


def _check_urls(problems: _Problems, key: str, value: Any) -> tuple[UrlFile, ...]:
    """`url:` is one {url, path?, sha256, size?} mapping or a list of them; sha256 is required."""
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not items:
        problems.add(
            key,
            f"expected a list of {{url: URL, sha256: HEX}} mappings, got {_kind(value)}",
            "Each file needs its sha256: run `sha256sum FILE`.",
        )
        return ()
    out: list[UrlFile] = []
    paths: set[str] = set()
    for index, item in enumerate(items):
        where = f"{key}[{index}]" if isinstance(value, list) else key
        if not isinstance(item, dict):
            problems.add(where, f"expected a mapping {{url: URL, sha256: HEX}}, got {_kind(item)}")
            continue
        _check_keys(problems, where, item, _URL_FILE_KEYS)
        for required in ("url", "sha256"):
            if required not in item:
                problems.add(
                    where,
                    f"missing required key '{required}'",
                    "Each file needs its sha256: run `sha256sum FILE`.",
                )
        url = _string(problems, f"{where}.url", item["url"]) if "url" in item else None
        if url is not None and not _URL_RE.match(url):
            problems.add(f"{where}.url", f"'{url}' is not an http(s) URL")
            url = None
        sha256 = _string(problems, f"{where}.sha256", item["sha256"]) if "sha256" in item else None
        if sha256 is not None and not _SHA256_RE.match(sha256):
            problems.add(f"{where}.sha256", f"malformed sha256 {sha256!r}: expected 64 hex digits")
            sha256 = None
        size = item.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            problems.add(f"{where}.size", f"expected a size in bytes, got {_kind(size)}")
        default = urlsplit(url).path.rsplit("/", 1)[-1] if url else None
        path = _string(problems, f"{where}.path", item["path"]) if "path" in item else default
        path_key = f"{where}.path" if "path" in item else f"{where}.url"
        if url is not None and not path:
            problems.add(path_key, "the URL ends in '/': give the file's name as 'path:'")
            continue
        if path is None or not _check_relative(problems, path_key, path, "file"):
            continue
        if any(p in ("", ".") for p in path.split("/")) or path.split("/")[0] == ".modelctl":
            problems.add(path_key, f"file '{path}' is not a plain relative path inside the model folder")
            continue
        if path in paths:
            problems.add(path_key, f"two files land at '{path}'", "Give one of them its own 'path:'.")
            continue
        paths.add(path)
        if url is not None and sha256 is not None:
            out.append(UrlFile(url, path, sha256.lower().removeprefix("sha256:"), size))
    return tuple(out)


def _optional_string(problems: _Problems, key: str, value: Any) -> str | None:
    return None if value is None else _string(problems, key, value)


def _check_id(problems: _Problems, key: str, value: Any) -> str | None:
    text = _string(problems, key, value)
    if text is not None and (not _ID_RE.match(text) or len(text) > 96):
        problems.add(
            key,
            f"'{text}' is not a valid id: use lower-case letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (ids name folders, so '/' and '..' are refused)",
        )
        return None
    return text


def repo_id_problem(text: str) -> str | None:
    """Why text is not a Hub repo id ('namespace/name' or 'name'), or None."""
    parts = text.split("/")
    if len(parts) > 2 or not all(_REPO_PART_RE.match(p) and ".." not in p for p in parts):
        return f"'{text}' is not a Hub repo id: expected 'namespace/name', e.g. apple/FastVLM-0.5B"
    return None


def _check_repo_id(problems: _Problems, key: str, value: Any) -> str | None:
    text = _string(problems, key, value)
    if text is None:
        return None
    problem = repo_id_problem(text)
    if problem is not None:
        problems.add(key, problem)
        return None
    return text


def _check_size(problems: _Problems, key: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problems.add(
            key,
            f'expected a size variant such as "0.5b", got the number {value!r}',
            'Quote it and add the unit: size: "7b".',
        )
        return None
    text = _string(problems, key, value)
    if text is None:
        return None
    text = text.lower()
    if text == "all" or not _SIZE_RE.match(text):
        problems.add(
            key, f"'{value}' is not a valid size variant: use e.g. 0.5b, 1.5b, 7b ('all' is reserved)"
        )
        return None
    return text


def _check_relative(problems: _Problems, key: str, text: str, what: str) -> bool:
    parts = text.split("/")
    if (
        text.startswith("/")
        or "\\" in text
        or "\x00" in text
        or ".." in parts
        or re.match(r"^[A-Za-z]:", text)
    ):
        problems.add(
            key,
            f"{what} '{text}' must be a relative path inside the model folder (no '..', '/' at the start, '\\' or drive letters)",
        )
        return False
    return True


def _check_files(problems: _Problems, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        problems.add(key, f"expected a list of file names or globs, got {_kind(value)}")
        return ()
    out: list[str] = []
    for index, pattern in enumerate(value):
        text = _string(problems, f"{key}[{index}]", pattern)
        if text is not None and _check_relative(problems, f"{key}[{index}]", text, "pattern"):
            out.append(text)
    return tuple(out)


def _check_local_dir(problems: _Problems, key: str, value: Any) -> str | None:
    if value is None:
        return None
    text = _string(problems, key, value)
    if text is None:
        return None
    if not _FOLDER_RE.match(text) or text in (".", ".."):
        problems.add(
            key,
            f"'{text}' is not a folder name: one path component of letters, digits, '.', '_', '-', '+' or spaces (no '/' or '..')",
        )
        return None
    return text


def _check_checksums(problems: _Problems, key: str, value: Any) -> dict[str, Checksum]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(key, f"expected a mapping of file path to 'algo:hex', got {_kind(value)}")
        return {}
    out: dict[str, Checksum] = {}
    for file_name, pin in value.items():
        where = f"{key}.{file_name}"
        name = _string(problems, where, file_name)
        if name is None or not _check_relative(problems, where, name, "file"):
            continue
        checksum = parse_checksum(pin) if isinstance(pin, str) else None
        if checksum is None:
            allowed = ", ".join(f"{a}:<{n} hex digits>" for a, n in sorted(ALGORITHMS.items()))
            problems.add(
                where,
                f"malformed checksum {pin!r}: expected {allowed}",
                "Run `sha256sum FILE` and write it as sha256:<hex>.",
            )
            continue
        out[name] = checksum
    return out
