"""The house rules of docs/architecture.md, read off the source: imports only point down the layers,
no import cycles, commands stay thin and no module grows into a room with several jobs."""

import ast

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "tfdepth"
# bottom to top; a module may import from its own layer or any layer below (docs/architecture.md)
LAYERS = [
    {"errors", "registry", "registries"},
    {"io", "geometry", "sid", "metrics", "progress"},
    {"config", "config_checks"},
    {"data"},
    {"models", "losses"},
    {"evaluation"},
    {"training"},
    {"serving", "bench", "zoo"},
    {"measure"},
    {"commands"},
]
COMMANDS = {"train", "evaluate", "predict", "export", "convert", "info", "cli", "__main__"}
MAX_MODULE_LINES = 700
MAX_COMMAND_LINES = 200


def _modules():
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _group(module):
    parts = module.split(".")[1:]
    if not parts:
        return None
    if parts[0] in COMMANDS or parts[-1] == "__main__" or parts[:2] == ["data", "inspect"]:
        return "commands"
    return parts[0]


def _level(group):
    return next(i for i, layer in enumerate(LAYERS) if group in layer)


def _imports(path):
    """tfdepth modules imported anywhere in the file (module level and inside functions)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("tfdepth"):
            if node.module == "tfdepth":
                yield from (f"tfdepth.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("tfdepth"))


def _resolve(name, modules):
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def test_every_package_has_a_layer():
    groups = {_group(m) for m in _modules()} - {None}
    missing = sorted(g for g in groups if not any(g in layer for layer in LAYERS))
    assert not missing, f"add these to LAYERS and docs/architecture.md: {missing}"


def test_imports_point_down_the_layers():
    modules = _modules()
    upward = []
    for module, path in sorted(modules.items()):
        for target in _imports(path):
            a, b = _group(module), _group(_resolve(target, modules) or target)
            if a and b and a != b and _level(b) > _level(a):
                upward.append(f"{module} ({a}) imports {target} ({b})")
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_no_import_cycles():
    modules = _modules()
    graph = {m: {_resolve(t, modules) for t in _imports(p)} - {m, ""} for m, p in modules.items()}
    # a package importing its own submodules is not a cycle of design
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in graph.get(m, ()):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_modules_and_commands_stay_small():
    too_big = []
    for module, path in sorted(_modules().items()):
        lines = len(path.read_text().splitlines())
        limit = MAX_COMMAND_LINES if _group(module) == "commands" else MAX_MODULE_LINES
        if lines > limit:
            too_big.append(f"{module}: {lines} lines (limit {limit})")
    assert not too_big, "\n".join(too_big)
