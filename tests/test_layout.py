"""Package layout (issue 28): folders by concern whose imports run one way (down the layers),
no import cycle, few modules at the top, no long module without a stated reason."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "socialgradient"
MAX_LINES = 400  # a module this long says why in its docstring
HARD_LINES = 500  # and none is longer
REASON = "over 400 lines because"
#: The layers, lowest first. A module's layer is its folder under src/socialgradient (or, at
#: the top, its own name); it imports its own layer and lower ones, never a higher one.
LAYERS = (
    ("socialgradient", "_moved"),  # the package itself (its version) and the old paths
    ("util",),  # atomic writes, file hashes, output sets, progress, memory
    ("spec", "resources"),  # the frozen spec; the package's data and models
    ("data",),  # the input contract, synthetic England, public sources, census ingest
    ("model",),
    ("sampling",),
    ("results",),
    ("release",),
    ("panel",),
    ("study",),
    ("api",),  # the one Python facade
    ("cli",),  # the command line
)
MAX_TOP = 10  # modules (.py files) directly under src/socialgradient


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules) -> set[str]:
    """socialgradient modules imported anywhere in the file (function-level imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from pkg import mod` imports the submodule; `from mod import name` the module.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def layer_of(name: str) -> int:
    """The rank in :data:`LAYERS` of module ``name`` (from its folder under the package)."""
    parts = name.split(".")
    where = parts[1] if len(parts) > 1 else parts[0]
    for rank, names in enumerate(LAYERS):
        if where in names:
            return rank
    raise AssertionError(f"{name}: its folder {where!r} is in no layer of LAYERS")


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer, as ``"importer -> imported"``."""
    return [
        f"{a} -> {b}"
        for a, targets in sorted(graph.items())
        for b in sorted(targets)
        if layer_of(b) > layer_of(a)
    ]


def test_imports_run_down_the_layers():
    assert upward(_graph()) == []


def test_the_layer_check_sees_an_upward_import():
    # the check itself: a data module importing the model, and the model the facade
    graph = {
        "socialgradient.data.schema": {"socialgradient.model.build"},
        "socialgradient.model.build": {"socialgradient.api", "socialgradient.util.files"},
    }
    assert upward(graph) == [
        "socialgradient.data.schema -> socialgradient.model.build",
        "socialgradient.model.build -> socialgradient.api",
    ]


def test_every_folder_says_its_purpose_in_one_line():
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        first = doc.split("\n")[0]
        assert first.endswith("."), (init, first)
        assert len(first) <= 100, (init, first)
    top = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert top == {n for names in LAYERS for n in names if (PACKAGE / n).is_dir()}


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP, top


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_graph_sees_function_level_imports():
    modules = _modules()
    cli = _imports("socialgradient.cli", modules["socialgradient.cli"], modules)
    inputs = _imports("socialgradient.cli.inputs", modules["socialgradient.cli.inputs"], modules)
    assert "socialgradient.data.census.returns" in inputs  # imported inside a function
    assert "socialgradient.panel.model" in cli  # imported inside _dispatch


def test_no_module_over_the_hard_limit():
    lines = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules().items()
    }
    over = {name: n for name, n in lines.items() if n > HARD_LINES}
    assert not over, over


def test_long_modules_state_why():
    long = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if REASON not in " ".join(doc.split()).lower():
                long.append(f"{name} ({len(text.splitlines())} lines)")
    assert not long, (
        f"modules over {MAX_LINES} lines without '{REASON} ...' in their docstring: {long}"
    )
