"""The package's dependencies point one way: entry -> services -> domain, services -> ports <-
adapters; only adapters import boto3; handlers are thin. Read from the source, import by import."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "spot_core" / "python" / "spot_core"
AWS_SDK = ("boto3", "botocore", "mypy_boto3_")
# what each layer may import from spot_core (itself included)
ALLOWED = {
    "domain": {"domain"},
    "ports": {"domain", "ports"},
    "services": {"domain", "ports", "services"},
    "adapters": {"domain", "ports", "adapters"},
    "entry": {"domain", "ports", "services", "adapters", "entry"},
}


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imports(path: Path) -> list[str]:
    """Absolute names of what a module imports (relative imports resolved inside spot_core)."""
    package = ["spot_core", *path.relative_to(PACKAGE).parent.parts]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            names.append(".".join([*base, node.module] if node.module else base))
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_layer_imports_only_what_it_may(path):
    layer = layer_of(path)
    used = {name.split(".")[1] for name in imports(path) if name.startswith("spot_core.") and name.count(".") >= 1}
    assert used <= ALLOWED[layer], f"{layer} may not import {sorted(used - ALLOWED[layer])}"
    if layer != "adapters":
        sdk = [name for name in imports(path) if name.startswith(AWS_SDK)]
        assert not sdk or layer == "entry" and all(n.startswith("mypy_boto3_") for n in sdk), \
            f"only adapters talk to the AWS SDK: {sdk}"


def test_the_domain_and_services_know_nothing_of_lambda_or_powertools():
    for path in MODULES:
        if layer_of(path) in ("domain", "services", "ports"):
            assert not [n for n in imports(path) if n.startswith("aws_lambda_powertools")], path


@pytest.mark.parametrize("handler", sorted((ROOT / "functions").glob("*/app.py")), ids=lambda p: p.parent.name)
def test_handlers_are_thin(handler):
    tree = ast.parse(handler.read_text())
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "lambda_handler"]
    assert function.end_lineno - function.lineno + 1 <= 15, "a handler parses, calls its service and reports"
    assert any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "handler" for d in function.decorator_list)
