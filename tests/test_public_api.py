"""Every public name is exported, annotated, documented and on an API page."""

import inspect
import pathlib

import pytest

import scorax
import scorax.testing


DOCS = pathlib.Path(__file__).parent.parent / "docs" / "api"
PUBLIC = sorted(
    name
    for name, value in vars(scorax).items()
    if not name.startswith("_") and not inspect.ismodule(value)
)


def test_public_names_exist():
    assert len(PUBLIC) > 10, PUBLIC


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
