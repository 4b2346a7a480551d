"""Every public name is exported, annotated, documented and on an API page."""

import inspect
import pathlib
import re

import pytest

import scorax
import scorax.testing


DOCS = pathlib.Path(__file__).parent.parent / "docs" / "api"
# What `__init__` exports: every name without a leading underscore, except the
# submodules (`scorax.datasets`, `scorax.testing`), which have pages of their own.
EXPORTED = sorted(
    name
    for name, value in vars(scorax).items()
    if not name.startswith("_") and not inspect.ismodule(value)
)
PUBLIC = list(scorax.__all__)


def rendered_names() -> list[str]:
    """The top-level names the API pages render, one `::: scorax.NAME` each
    (indented inside a collapsed block for the abstract bases)."""
    pages = "\n".join(page.read_text() for page in sorted(DOCS.glob("*.md")))
    names = re.findall(r"^[ \t]*::: scorax\.(\w+)[ \t]*$", pages, re.MULTILINE)
    return [name for name in names if not inspect.ismodule(getattr(scorax, name, None))]


def test_public_names_exist():
    assert len(PUBLIC) > 10, PUBLIC


def test_all_lists_exactly_the_exported_names_once():
    """`scorax.__all__` is the public contract: a name exported by `__init__` but
    missing from `__all__`, or listed there but not exported, fails here."""
    assert len(set(PUBLIC)) == len(PUBLIC), "a name is listed twice in __all__"
    missing = sorted(set(EXPORTED) - set(PUBLIC))
    absent = sorted(set(PUBLIC) - set(EXPORTED))
    assert not missing, f"exported by scorax/__init__.py but not in __all__: {missing}"
    assert not absent, f"in __all__ but not exported by scorax/__init__.py: {absent}"


def test_api_pages_render_exactly_the_public_names():
    """Every name of `__all__` is rendered on exactly one API page, and the pages
    render no top-level name that is not public."""
    rendered = rendered_names()
    twice = sorted({name for name in rendered if rendered.count(name) > 1})
    undocumented = sorted(set(PUBLIC) - set(rendered))
    unknown = sorted(set(rendered) - set(PUBLIC))
    assert not undocumented, f"public, but on no API page (docs/api/): {undocumented}"
    assert not unknown, f"on an API page, but not in scorax.__all__: {unknown}"
    assert not twice, f"rendered on more than one API page: {twice}"


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_on_an_api_page(name):
    pages = "".join(page.read_text() for page in DOCS.glob("*.md"))
    assert f"::: scorax.{name}\n" in pages + "\n"


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_has_a_docstring_of_its_own(name):
    value = getattr(scorax, name)
    doc = value.__doc__ if isinstance(value, type) or callable(value) else None
    assert doc and doc.strip(), f"scorax.{name} has no docstring"
    # Dataclasses (so Equinox modules) synthesise `Name(field=...)` when undocumented.
    assert not doc.startswith(f"{name}("), f"scorax.{name} has no docstring"


@pytest.mark.parametrize("name", PUBLIC)
def test_public_callables_are_fully_annotated(name):
    """Annotations are what jaxtyping + beartype check at run time."""
    value = getattr(scorax, name)
    functions = (
        [value]
        if inspect.isfunction(value)
        else [m for m in vars(value).values() if inspect.isfunction(m)]
        if isinstance(value, type)
        else []
    )
    for function in functions:
        if function.__name__.startswith("_") and function.__name__ != "__init__":
            continue
        signature = inspect.signature(function)
        for parameter in list(signature.parameters.values())[
            1 if isinstance(value, type) else 0 :
        ]:
            assert parameter.annotation is not inspect.Parameter.empty, (
                f"{name}.{function.__name__}: `{parameter.name}` is not annotated"
            )
        if function.__name__ != "__init__":
            assert signature.return_annotation is not inspect.Signature.empty, (
                f"{name}.{function.__name__} has no return annotation"
            )


@pytest.mark.parametrize("name", scorax.datasets.__all__)
def test_data_sets_are_documented_and_listed(name):
    page = (DOCS / "datasets.md").read_text()
    assert f"- {name}\n" in page
    doc = getattr(scorax.datasets, name).__doc__
    assert doc and doc.strip()


@pytest.mark.parametrize("name", scorax.testing.__all__)
def test_testing_kit_names_are_documented_annotated_and_on_the_api_page(name):
    page = (DOCS / "testing.md").read_text()
    assert f"::: scorax.testing.{name}\n" in page
    value = getattr(scorax.testing, name)
    assert value.__doc__ and value.__doc__.strip()
    functions = [value] if inspect.isfunction(value) else []
    for function in functions:
        signature = inspect.signature(function)
        for parameter in signature.parameters.values():
            assert parameter.annotation is not inspect.Parameter.empty, (
                f"scorax.testing.{name}: `{parameter.name}` is not annotated"
            )
        assert signature.return_annotation is not inspect.Signature.empty


def test_version_matches_the_installed_package_metadata():
    """`scorax.__version__` is what pip and the changelog call this release."""
    import importlib.metadata

    assert scorax.__version__ == importlib.metadata.version("scorax")
    changelog = (pathlib.Path(__file__).parent.parent / "CHANGELOG.md").read_text()
    assert f"## [{scorax.__version__}]" in changelog
