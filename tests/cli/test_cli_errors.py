"""How the command line reports errors: the user's (one line) apart from qhead's bugs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import qhead.cli as cli
from qhead.cli import INTERNAL_ERROR, USER_ERROR, main
from qhead.errors import ConfigError, QheadError

SRC = Path(__file__).resolve().parents[2] / "src" / "qhead"


def _failing_list(monkeypatch, error: BaseException) -> None:
    import qhead.cli.list_cmd as list_cmd

    def run(args):
        raise error

    monkeypatch.setattr(list_cmd, "run", run)


@pytest.mark.parametrize("error", [QheadError("data.root x does not exist"),
                                   ConfigError("epochs: expected an integer >= 1, got 0")])
def test_a_user_error_is_one_line_naming_the_problem(monkeypatch, capsys, error) -> None:
    _failing_list(monkeypatch, error)
    assert main(["list"]) == USER_ERROR == 1
    err = capsys.readouterr().err.strip()
    assert err == f"qhead list: error: {error}"


@pytest.mark.parametrize("error", [ValueError("shapes do not match"), KeyError("weights"),
                                   ZeroDivisionError("division by zero")])
def test_anything_else_is_reported_as_a_bug(monkeypatch, capsys, error) -> None:
    """A ValueError or KeyError from qhead's own code is a bug, not bad input."""
    _failing_list(monkeypatch, error)
    assert main(["list"]) == INTERNAL_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"qhead list: internal error ({type(error).__name__}")
    assert "--debug" in err and "bug" in err


def test_debug_shows_the_traceback(monkeypatch) -> None:
    _failing_list(monkeypatch, ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "list"])
    _failing_list(monkeypatch, QheadError("bad input"))
    with pytest.raises(QheadError):
        main(["--debug", "list"])


def test_a_sub_command_that_does_not_import_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "no_such_command"))
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        cli.build_parser()


def _qhead_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qhead"):
            yield node, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("qhead")]
            if names:
                yield node, names


def test_no_private_names_cross_modules_and_no_import_fallbacks_for_qhead() -> None:
    """Nothing imports another module's ``_private`` name, and no import of qhead's own
    modules sits in a ``try`` that swallows ``ImportError`` (a broken module must fail)."""
    private, fallbacks = [], []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(SRC.parent)
        for node, names in _qhead_imports(tree):
            private += [f"{where}:{node.lineno} {n}" for n in names
                        if n.startswith("_") and not n.endswith("__")]  # __version__ is public
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try):
                continue
            caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if not caught & {"ImportError", "ModuleNotFoundError"}:
                continue
            for inner in node.body:
                for _, names in _qhead_imports(inner):
                    fallbacks.append(f"{where}:{inner.lineno} {names}")
    assert private == [] and fallbacks == []
