"""Dependencies run one way, read from the code (every import statement, also those inside functions).

Layers, lowest first: ``schedulers`` (no TensorFlow) <- the core of
``adaptive_dff`` <- the tools built on the core (``compare``, ``evaluate``,
``pretrained``, ``bench``, ``demo``) and, beside them, ``training`` <- the
command line. A module imports only its own layer or lower ones; the tools
and ``training`` never import each other. No module imports a private name
(``_x``) of another module; a private module is used only inside its package.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("schedulers", "adaptive_dff", "training")
TOOLS = ("adaptive_dff.compare", "adaptive_dff.evaluate", "adaptive_dff.pretrained", "adaptive_dff.bench",
         "adaptive_dff.segment",
         "adaptive_dff.demo")


def layer(module: str) -> tuple[int, str]:
    """``(rank, group)`` of a module: it may import lower ranks and its own group."""
    if module in ("adaptive_dff.cli", "adaptive_dff.cli_args"):
        return 3, "cli"
    if module.split(".")[0] == "training":
        return 2, "training"
    if any(module == t or module.startswith(t + ".") for t in TOOLS):
        return 2, "tools"
    if module.split(".")[0] == "adaptive_dff":
        return 1, "core"
    return 0, "schedulers"


def project_modules() -> dict:
    """``{dotted name: path}`` of every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = project_modules()


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imports(module: str, path: pathlib.Path) -> list:
    """``[(line, imported module, private name or None)]`` of ``module``'s source,
    including ``alias._name`` uses of an imported project module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found, bound = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    found.append((node.lineno, alias.name, None))
                    if alias.asname:
                        bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in MODULES:
                    found.append((node.lineno, submodule, None))
                    bound[alias.asname or alias.name] = submodule
                else:
                    found.append((node.lineno, node.module, alias.name if is_private(alias.name) else None))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            if is_private(node.attr):
                found.append((node.lineno, bound[node.value.id], node.attr))
    return found


def problems() -> list:
    out = []
    for module, path in MODULES.items():
        rank, group = layer(module)
        for line, target, private in imports(module, path):
            where = f"{path.relative_to(ROOT)}:{line}"
            target_rank, target_group = layer(target)
            if target_rank > rank or (target_rank == rank and target_group != group):
                out.append(f"{where}: {group} module {module} imports {target_group} module {target}")
            if private and target != module:
                out.append(f"{where}: {module} uses the private name {private} of {target}")
            last = target.split(".")[-1]
            parent = target.rsplit(".", 1)[0]
            if is_private(last) and not (module == parent or module.startswith(parent + ".")):
                out.append(f"{where}: {module} imports the private module {target} from outside its package")
    return list(dict.fromkeys(out))


def test_every_import_goes_to_the_same_or_a_lower_layer_and_no_private_name_is_used():
    assert problems() == []


@pytest.mark.parametrize("source, message", [
    ("from training.dff import build_model\n", "tools module adaptive_dff.compare.run imports training"),
    ("from adaptive_dff.warp import _warp_compiled\n", "uses the private name _warp_compiled"),
    ("import adaptive_dff.warp as w\nw._raw\n", "uses the private name _raw"),
    ("def f():\n    from adaptive_dff.cli import main\n", "imports cli module adaptive_dff.cli"),
])
def test_the_check_sees_a_bad_import(tmp_path, monkeypatch, source, message):
    path = tmp_path / "run.py"
    path.write_text(source)
    monkeypatch.setitem(MODULES, "adaptive_dff.compare.run", path)
    monkeypatch.setattr(pathlib.Path, "relative_to", lambda self, other: self)
    assert any(message in p for p in problems())


def test_layers_of_known_modules():
    assert layer("schedulers.base") == (0, "schedulers")
    assert layer("adaptive_dff.warp") == (1, "core") and layer("adaptive_dff.data.camvid") == (1, "core")
    assert layer("adaptive_dff.compare.run") == (2, "tools") and layer("training.dff") == (2, "training")
