"""Dependencies point one way (issue #10): the command line sits on top of pure library code,
and no two top-level folders import each other, directly or through others. Read from the
source with `ast`, lazy imports inside functions included."""
import ast
from pathlib import Path

from conftest import ROOT

FOLDERS = ["nlp", "labels", "training", "models", "report", "serve"]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts) if rel.parts[0] == "policytag" else ["policytag", *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_files() -> dict[str, Path]:
    files = {}
    for folder in ["policytag", *FOLDERS]:
        for path in (ROOT / folder).rglob("*.py"):
            files[module_name(path)] = path
    return files


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            found |= {c for c in [base, *(f"{base}.{a.name}" for a in node.names)] if c in known}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
    return found - {name}


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports(name, path, set(files)) for name, path in files.items()}


def layer(module: str) -> str:
    """The folder a module lives in; policytag.cli is its own layer; the rest of policytag/
    (atomic files, the console) is the base every folder may use."""
    part = module.split(".")[1] if "." in module else ""
    if part in ("cli", "__main__"):
        return "cli"
    return part if part in FOLDERS else "base"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(edges):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_graph_sees_the_imports():
    g = graph()
    assert "policytag.models.tagger" in g["policytag.training.train"]
    assert "policytag.files" in g["policytag.nlp.ingest"] or "policytag.files" in g["policytag.models.batch"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_library_code_never_imports_the_command_line():
    offenders = {m: sorted(d for d in deps if layer(d) == "cli")
                 for m, deps in graph().items() if layer(m) != "cli"}
    assert not {m: d for m, d in offenders.items() if d}


def test_base_modules_import_no_folder():
    g = graph()
    assert not {m: sorted(d) for m, d in g.items() if layer(m) == "base" and m != "policytag" and d}


def test_no_import_cycle_between_folders():
    edges: dict[str, set[str]] = {}
    for m, deps in graph().items():
        for d in deps:
            if layer(m) != layer(d):
                edges.setdefault(layer(m), set()).add(layer(d))
    assert find_cycle(edges) is None, f"folders import each other: {' -> '.join(find_cycle(edges))}"


def test_no_import_cycle_between_modules():
    cycle = find_cycle(graph())
    assert cycle is None, f"modules import each other: {' -> '.join(cycle)}"
