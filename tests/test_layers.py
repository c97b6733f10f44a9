"""The package's import structure, held: layers in folders, no import up a layer or across ops
modules, no cycle (function-level imports count), no private name imported from another module,
and function-level imports only within a shrinking budget. docs/architecture.md states the rules.

Imports under `if TYPE_CHECKING:` are annotations, not run, and do not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "modelctl"
# Function-level imports of modelctl modules today, each for start-up with its reason on its line:
# __main__ (signal handlers before Typer), loader (a local file needs no registry), output
# (progress only for commands that download), output.tables (usage only for a download's notes),
# store.workspace (the lock only when the project has one). The cli/ commands need none: their
# modules are imported when the command is looked up (cli/__init__.py LazyCommands). It may only
# shrink.
FUNCTION_LEVEL_BUDGET = 5  # counted per name imported

# The layers, bottom up: a module imports its own layer or one below, never one above. The folder
# (or, on top, the module) says the layer.
LAYERS = {
    "core": 0,  # what a model is: registry, record, lock, options, errors, retries, digests
    "store": 1,  # model folders on disk: roots, state, verification, reuse
    "net": 2,  # the Hub's metadata, HTTP and TLS, the download engine
    "fetch": 3,  # plans of a model's files, and running them
    "ops": 4,  # one module per command's core; never imports another ops module
    "output": 5,  # reports for people and for --json
    "api": 6,  # the Python API ...
    "loader": 6,  # ... and the seeds' loaders built on it
    "pretrained": 6,
    "cli": 7,  # the Typer app and its commands
    "__main__": 8,  # the entry point
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str, bool]]:
    """(imported module, imported name, is inside a function) for each modelctl import that runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    in_function = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            pairs = [(a.name, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            pairs = [(node.module, a.name) for a in node.names]
        else:
            continue
        for module, item in pairs:
            if not module.startswith("modelctl"):
                continue
            target = f"{module}.{item}" if f"{module}.{item}" in modules else module
            found.append((target, item, id(node) in in_function))
    return found


# Classes over 250 lines or functions over 60, today: each may only shrink, and no other may
# grow past the limits. The CLI's commands are mostly their Typer signatures.
LONG = {
    "cli.disk.clean_command": 84,
    "cli.fetching.download_command": 70,
    "cli.registry_cmds.add_command": 61,
    "fetch.download._run_model": 62,
    "net.hub.translate_errors": 80,
    "ops.ensure._repair": 63,
    "output.tables._render_one_info": 82,
}
MAX_CLASS, MAX_FUNCTION = 250, 60


def _long_parts() -> dict[str, int]:
    """Qualified name → lines, for each class over MAX_CLASS and function over MAX_FUNCTION."""
    out = {}
    for name, path in _modules().items():
        prefix = name.removeprefix("modelctl").removeprefix(".")
        prefix = prefix.removesuffix("__init__")

        def visit(node: ast.AST, outer: str, path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    qualified = f"{outer}.{child.name}" if outer else child.name
                    lines = (child.end_lineno or child.lineno) - child.lineno + 1
                    limit = MAX_CLASS if isinstance(child, ast.ClassDef) else MAX_FUNCTION
                    if lines > limit:
                        out[qualified] = lines
                    visit(child, qualified)

        visit(ast.parse(path.read_text(encoding="utf-8")), prefix)
    return out


def _layer(module: str) -> int:
    """A module's layer: the package itself (its lazy facade) sits on top, with __main__."""
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else LAYERS["__main__"]


def _against_layers(edges: dict[str, set[str]]) -> list[str]:
    """Imports that run up a layer, or from one ops module to another."""
    wrong = []
    for source, targets in edges.items():
        for target in sorted(targets):
            if _layer(target) > _layer(source):
                wrong.append(f"{source} imports {target}, a layer above it")
            elif _layer(source) == LAYERS["ops"] == _layer(target) and target != "modelctl.ops":
                wrong.append(f"{source} imports {target}: ops modules do not import each other")
    return wrong


def _graph() -> tuple[dict[str, set[str]], list[str], int]:
    from modelctl.cli import COMMANDS

    modules = _modules()
    # cli/__init__.py imports each command's module by the name COMMANDS gives (LazyCommands)
    edges: dict[str, set[str]] = {
        "modelctl.cli": {f"modelctl.cli.{where.split(':')[0]}" for _, where, _ in COMMANDS}
    }
    private, function_level = [], 0
    for name, path in modules.items():
        for target, item, is_local in _imports(name, path, modules):
            function_level += is_local
            if target != name and target in modules:
                edges.setdefault(name, set()).add(target)
            if item.startswith("_") and not item.startswith("__"):
                private.append(f"{name} imports {item} from {target}")
    return edges, private, function_level


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle() -> None:
    edges, _, _ = _graph()
    assert sum(len(t) for t in edges.values()) > 100  # the walk sees the package
    assert _cycles(edges) == []


def test_every_module_is_in_a_layer() -> None:
    unplaced = [name for name in _modules() if len(name.split(".")) > 1 and name.split(".")[1] not in LAYERS]
    assert unplaced == []


def test_no_import_runs_up_a_layer_or_across_ops_modules() -> None:
    edges, _, _ = _graph()
    assert _against_layers(edges) == []


def test_the_version_agrees_with_pyproject() -> None:
    from modelctl.core import __version__

    pyproject = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{__version__}"' in pyproject


def test_no_class_over_250_lines_and_no_function_over_60_but_the_listed_ones() -> None:
    found = _long_parts()
    grew = {name: lines for name, lines in found.items() if lines > LONG.get(name, 0)}
    assert grew == {}, "split these (or, if one shrank, lower its LONG entry)"
    assert set(LONG) <= set(found), f"no longer long, remove from LONG: {set(LONG) - set(found)}"


def test_no_private_name_is_imported_from_another_module() -> None:
    _, private, _ = _graph()
    assert private == []


def test_function_level_imports_stay_within_the_budget() -> None:
    _, _, function_level = _graph()
    assert function_level <= FUNCTION_LEVEL_BUDGET, function_level


def test_statuses_are_classified_in_one_place() -> None:
    """Which HTTP answers are retried, and which say the server is busy, is core.retry's
    retry_for_status: no other module names the status sets."""
    naming = [
        name
        for name, path in _modules().items()
        if name != "modelctl.core.retry"
        and re.search(
            r"RETRYABLE_STATUSES|BUSY_STATUSES|in \(429|== 429|== 503", path.read_text(encoding="utf-8")
        )
    ]
    assert naming == []


# Hints below the front ends (cli/, output/, api) that spell a flag or a `modelctl` command
# instead of naming the step as data (core.errors.option/command, worded by output.cli_words and
# the API's voice): only hfcache.py's `hf download --force-download`, another tool's command.
SPELLED_HINTS_BUDGET = 1


def _spelled_hints() -> list[str]:
    """hint= arguments below cli/ and output/ whose text names a flag or a modelctl command."""
    found = []
    for name, path in _modules().items():
        if name.split(".")[1:2] in (["cli"], ["output"], ["api"]):  # the front ends
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.keyword) and node.arg in ("hint", "default_hint")) or (
                isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "default_hint"
            ):
                text = ast.unparse(node.value)
            else:
                continue
            if re.search(r"(?<![\w-])--[a-z]|`modelctl |\{command\}", text):
                found.append(f"{name}:{node.lineno}")
    return found


def test_next_steps_below_the_cli_are_data() -> None:
    spelled = _spelled_hints()
    assert len(spelled) <= SPELLED_HINTS_BUDGET, spelled


# Other text below the front ends that spells a flag or a `modelctl` command: the starter
# models.yaml's comments (a file for the CLI's user), the registry source's "--config" (its name
# in `list`), and pretrained.py's `hf download ... --revision` (another tool's). Messages and
# findings word their steps through core.errors.spoken, in the voice of the front end in use.
SPELLED_TEXT_BUDGET = 3


_SPELLED = re.compile(r"(?<![\w-])--(?!show-toplevel|force-download)[a-z]|`modelctl ")  # not git's, hf's


def _spelled_text() -> list[str]:
    """String constants (docstrings aside) below the front ends naming a flag or a modelctl command."""
    found = []
    for name, path in _modules().items():
        if name.split(".")[1:2] in (["cli"], ["output"], ["api"]):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and id(node) not in docstrings and _SPELLED.search(node.value):
                found.append(f"{name}:{node.lineno}")
    return found


def test_text_below_the_cli_spells_few_flags() -> None:
    spelled = _spelled_text()
    assert len(spelled) <= SPELLED_TEXT_BUDGET, spelled


def test_the_walk_finds_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    """The checks can fail: a cycle through a function-level import is one."""
    edges = {"modelctl.a": {"modelctl.b"}, "modelctl.b": {"modelctl.c"}, "modelctl.c": {"modelctl.a"}}
    assert _cycles(edges) == [["modelctl.a", "modelctl.b", "modelctl.c"]]
    up = {"modelctl.core.record": {"modelctl.net.engine"}, "modelctl.ops.ensure": {"modelctl.ops.clean"}}
    assert _against_layers(up) == [
        "modelctl.core.record imports modelctl.net.engine, a layer above it",
        "modelctl.ops.ensure imports modelctl.ops.clean: ops modules do not import each other",
    ]
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from modelctl.net.transfer import _connect\n")
    found = _imports("modelctl.m", source, {"modelctl.net.transfer": source, "modelctl.m": source})
    assert found == [("modelctl.net.transfer", "_connect", True)]


def test_the_architecture_page_names_every_module() -> None:
    """docs/architecture.md's layer table lists each module once: a new module updates the page."""
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = [line for line in page.splitlines() if line.startswith("| ") and line[2:3].isdigit()]
    named = [name for line in table for name in re.findall(r"`([a-z_.]+)`", line.split("|")[2])]
    modules = sorted(name.removeprefix("modelctl.") for name in _modules() if name != "modelctl")
    assert sorted(named) == modules


def test_every_report_has_its_json_and_its_table_found_by_its_type() -> None:
    """output.render dispatches on the report's class name: each name registered is a class of the
    package, and each report with a JSON contract has a table (init, which has no --json, only one)."""
    from modelctl.output import contract, tables

    classes = {
        node.name
        for path in _modules().values()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
    }
    assert set(contract.JSON_OF) <= set(tables.TABLE_OF)
    assert set(tables.TABLE_OF) - set(contract.JSON_OF) == {"InitResult"}
    assert set(tables.TABLE_OF) <= classes
    assert len(tables.TABLE_OF) >= 14  # every command's report: the walk sees them


# The types that describe one file of a model, by what each is for. A new one must replace one of
# these or say here why a file needs another shape. Issue 21 asks for 8; UrlFile is the ninth (a
# registry entry whose size may be unknown until its server is asked).
FILE_SHAPES = {
    "RepoFile": "a file of the commit (listing, lock, record)",
    "Checked": "the last hash of a copy on disk",
    "UrlFile": "a url model's file as models.yaml pins it",
    "FileDecision": "what a download plans for one file",
    "Candidate": "the same bytes elsewhere on the machine",
    "FileJob": "what the engine fetches",
    "FileResult": "what a run did with one file",
    "HashTask": "one file being hashed",
    "Finding": "one check's result on one file",
}
_PATH_FIELDS = {"path", "rel_path"}
_FILE_FACTS = {"size", "sha256", "blob_id", "digests", "checked", "check", "hasher", "change", "action"}
_FILE_FACTS |= {"is_link", "url", "is_verified"}


def _file_shapes(package: Path) -> dict[str, str]:
    """{class: module} of the classes whose fields describe one file: a path and a fact about its
    content, or a RepoFile itself, or a size with digests."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            fields = {
                item.target.id: ast.unparse(item.annotation)
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
            names = fields.keys()
            if (
                (_PATH_FIELDS & names and _FILE_FACTS & names)
                or any(kind in ("RepoFile", "RepoFile | None") for kind in fields.values())
                or {"size", "digests"} <= names
            ):
                out[node.name] = path.relative_to(package).as_posix()
    return out


def test_few_types_describe_one_file() -> None:
    shapes = _file_shapes(PACKAGE)
    assert sorted(shapes) == sorted(FILE_SHAPES), shapes


def test_the_file_shape_walk_finds_a_new_shape(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "class _Listed(NamedTuple):\n    path: str\n    checked: Checked | None\n"
        "class Plan(NamedTuple):\n    remote: RepoFile\n"
        "class Folder(NamedTuple):\n    path: Path\n    files: tuple[RepoFile, ...]\n"
    )
    assert _file_shapes(tmp_path) == {"_Listed": "m.py", "Plan": "m.py"}
