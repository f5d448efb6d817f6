"""Imports point one way: from the drivers (cli, replay, runtime, ...) down to the pure core.

Each module of the package sits in a layer; it may import modules of its own
layer or of lower ones, never higher. A lower package that imports a higher
one fails this test with the offending import named. Imports under
`if TYPE_CHECKING:` name types for annotations only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import detector

ROOT = Path(detector.__file__).resolve().parent

# lowest first; a name is a module or package below `detector.` (the longest match wins)
LAYERS: list[tuple[str, ...]] = [
    ("detector", "errors", "config", "records", "smoke.settings"),   # settings and output records
    ("ingest",),                                                     # wire -> columns
    ("aggregate",),                                                  # columns -> closed windows
    ("stats",),                                                      # tests, pure numpy/scipy
    ("baselines", "anomaly", "logs"),                                # what is expected; templates
    ("judge", "fleet"),                                              # deploys -> verdicts; the fleet view
    ("core", "state"),                                               # the batch entry point
    ("replay", "outfiles", "runtime", "sinks", "smoke", "report", "simulate", "demo", "cli",
     "tune"),                                                        # drivers and edges
]


def _layer_of(module: str) -> int:
    """Layer of `detector.x.y` by the longest listed prefix."""
    rel = module.split(".", 1)[1] if "." in module else "detector"
    best, layer = -1, None
    for i, names in enumerate(LAYERS):
        for n in names:
            if rel == n or rel.startswith(n + "."):
                if len(n) > best:
                    best, layer = len(n), i
    assert layer is not None, f"{module} is in no layer: add its package to LAYERS"
    return layer


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:` (annotations only: no import at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(module: str, path: Path):
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("detector"):
                    yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("detector"):
                for a in node.names:
                    yield node.lineno, f"{base}.{a.name}" if (ROOT.parent / (base + "." + a.name).replace(".", "/")).with_suffix(".py").exists() \
                        or (ROOT.parent / (base + "." + a.name).replace(".", "/")).is_dir() else base


def test_every_import_points_down():
    wrong = []
    for module, path in _modules():
        mine = _layer_of(module)
        for line, target in _imports(module, path):
            if _layer_of(target) > mine:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line}: {module} (layer {mine}) imports "
                             f"{target} (layer {_layer_of(target)})")
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


def test_the_layers_name_every_package():
    for module, _path in _modules():
        _layer_of(module)
