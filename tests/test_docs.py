"""The documentation stays true: every test the identities page names exists."""

import ast
import pathlib
import re


ROOT = pathlib.Path(__file__).parent.parent


def test_every_identity_names_an_existing_test():
    page = (ROOT / "docs" / "identities.md").read_text()
    references = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", page)
    assert len(references) >= 30
    for path, name in references:
        tree = ast.parse((ROOT / path).read_text())
        names = {
            node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
        }
        assert name in names, f"docs/identities.md names {path}::{name}, not found"
