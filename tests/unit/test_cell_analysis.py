"""Which names a cell reads and assigns (what %%remote ships and brings back)."""

from __future__ import annotations

import pytest

from nbray.jupyter.cell_analysis import analyze_cell, ends_with_semicolon, split_line_options

pytestmark = pytest.mark.timeout(10)

BUILTINS_USED = {"print", "range", "len", "open", "sum", "int"}


def reads(source: str) -> set[str]:
    return set(analyze_cell(source).reads) - BUILTINS_USED


def assigns(source: str) -> tuple[str, ...]:
    return analyze_cell(source).assigns


@pytest.mark.parametrize("source, expected", [
    ("y = x + 1", {"x"}),
    ("x = 1\nprint(x)", set()),                        # bound before use: nothing to ship
    ("x = x + 1", {"x"}),                              # read before the assignment
    ("x += 1", {"x"}),
    ("a[i] = v", {"a", "i", "v"}),
    ("obj.attr = 3", {"obj"}),
    ("del old", {"old"}),
    ("print(f'{name}!')", {"name"}),
    ("if flag:\n    z = 1\nelse:\n    z = 2\nprint(z)", {"flag"}),   # bound on every path
    ("if flag:\n    z = 1\nprint(z)", {"flag", "z"}),                # maybe unbound: ship z if it exists
    ("for i in range(n):\n    total = total + i", {"n", "total"}),
    ("for i in items:\n    last = i\nprint(last)", {"items", "last"}),
    ("while cond():\n    k = 1", {"cond"}),
    ("try:\n    r = risky()\nexcept Err as e:\n    print(e)", {"risky", "Err"}),
    ("with open(p) as fh:\n    data = fh.read()\nprint(data)", {"p"}),
    ("def f(a, b=default):\n    return a + b + glob\nf(1)", {"default", "glob"}),
    ("def f():\n    return later\nlater = 1", {"later"}),   # read at def time: conservative
    ("def outer():\n    inner_var = 1\n    def inner():\n        return inner_var + free\n    return inner",
     {"free"}),
    ("lambda q: q + w", {"w"}),
    ("[v * k for v in data if v > threshold]", {"k", "data", "threshold"}),
    ("{k: v for k, v in pairs}", {"pairs"}),
    ("[[x for x in row] for row in grid]", {"grid"}),
    ("class A(Base):\n    k = 1\n    j = k + m\n    def meth(self):\n        return k", {"Base", "m", "k"}),
    ("class A:\n    xs = [1]\n    ys = [x for x in xs]", set()),   # first iterable is evaluated in the class
    ("import numpy as np\nnp.arange(3)", set()),
    ("(t := 5)\nt", set()),
    ("@decorator\ndef g():\n    pass", {"decorator"}),
    ("match cmd:\n    case [Point(x=px)]:\n        print(px)", {"cmd", "Point"}),
    ("x = await fetch()", {"fetch"}),
])
def test_reads(source: str, expected: set[str]) -> None:
    assert reads(source) == expected


@pytest.mark.parametrize("source, expected", [
    ("a = 1\nb, (c, *d) = 2, (3, 4, 5)", ("a", "b", "c", "d")),
    ("x += 1", ("x",)),
    ("n: int = 3\nm: int", ("n",)),                     # a bare annotation binds nothing
    ("for i in range(3):\n    acc = i", ("i", "acc")),
    ("with open(p) as fh:\n    pass", ("fh",)),
    ("import os.path\nimport numpy as np\nfrom math import sqrt as root, pi", ("os", "np", "root", "pi")),
    ("def f():\n    pass\nclass C:\n    pass", ("f", "C")),
    ("def g():\n    global counter\n    counter = 1", ("counter", "g")),
    ("def g():\n    local = 1", ("g",)),
    ("[u := v for v in vals]", ("u",)),                 # walrus in a comprehension binds outside it
    ("[w for w in vals]", ()),
    ("try:\n    pass\nexcept E as err:\n    pass", ()),   # Python unbinds `err` after the handler
    ("match cmd:\n    case {'k': kk, **rest}:\n        pass", ("kk", "rest")),
    ("a[0] = 1\nb.x += 2", ("a", "b")),                 # changed in place: brought back too
    ("x = 1\nx = 2", ("x",)),
])
def test_assigns(source: str, expected: tuple[str, ...]) -> None:
    assert assigns(source) == expected


def test_imports_and_star_import() -> None:
    a = analyze_cell("import os.path\nfrom collections import abc\nfrom . import sibling\nfrom pkg import *")
    assert a.imports == ("os.path", "collections", "pkg")
    assert a.star_import


def test_deletes() -> None:
    a = analyze_cell("del a, b[0]\nb = 1")
    assert a.deletes == frozenset({"a"})
    assert "b" in a.reads


@pytest.mark.parametrize("source, last", [
    ("x = 1\nx", True),
    ("x = 1\nx;", False),
    ("x = 1\nx  ;  # quiet", False),
    ("x = 1", False),
    ("f(x)\n# a comment after", True),
    ("s = 'a;'\ns", True),
    ("", False),
])
def test_last_expression(source: str, last: bool) -> None:
    assert analyze_cell(source).last_expression is last


def test_top_level_await_is_detected_but_not_inside_functions() -> None:
    assert analyze_cell("await asyncio.sleep(0)").uses_await
    assert analyze_cell("async for x in aiter():\n    pass").uses_await
    assert not analyze_cell("async def f():\n    await g()").uses_await


def test_syntax_errors_are_raised() -> None:
    with pytest.raises(SyntaxError):
        analyze_cell("x = (")


def test_ends_with_semicolon_ignores_strings_and_comments() -> None:
    assert ends_with_semicolon("a;")
    assert not ends_with_semicolon("a  # ;")
    assert not ends_with_semicolon("'a;'")


VALUE_FLAGS = ("--num-cpus", "--resources", "--session")
BARE_FLAGS = ("--no-pull", "--all")


@pytest.mark.parametrize("line, tokens, expression", [
    ("sum(range(10))", [], "sum(range(10))"),
    ("--num-cpus 2 f(x)", ["--num-cpus", "2"], "f(x)"),
    ("--num-cpus=2   x  +  1 ", ["--num-cpus=2"], "x  +  1"),
    ('--resources \'{"a": 1}\' --all len("a  b")', ["--resources", '{"a": 1}', "--all"], 'len("a  b")'),
    ("--no-pull -x", ["--no-pull"], "-x"),
    ("-x + 1", [], "-x + 1"),
    ('--session "my s" y', ["--session", "my s"], "y"),
])
def test_split_line_options(line: str, tokens: list[str], expression: str) -> None:
    assert split_line_options(line, VALUE_FLAGS, BARE_FLAGS) == (tokens, expression)


def test_split_line_options_missing_value() -> None:
    with pytest.raises(ValueError, match="--num-cpus needs a value"):
        split_line_options("--num-cpus   ", VALUE_FLAGS, BARE_FLAGS)
