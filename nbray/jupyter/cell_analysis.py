"""Which names a notebook cell reads and assigns (pure logic, no I/O).

Runs in the notebook kernel. ``%%remote`` ships the values of the names a
cell *reads* (when the notebook has them) and brings back the names it
*assigns*, so the analysis follows Python's scoping rules:

- a module-level read counts only if the name is not already bound earlier
  in the cell on every path (``x = 1; print(x)`` reads nothing);
- reads inside functions, lambdas, comprehensions and classes resolve to
  their own scope first and to the module only for free names (at the
  point of the ``def``: conservative for names bound later);
- bindings are assignments, augmented assignments, ``for``/``with``/walrus
  targets, ``def``/``class``, imports, ``match`` captures and names
  declared ``global`` inside functions; ``except ... as e`` is not one
  (Python unbinds it after the handler).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(frozen=True)
class CellAnalysis:
    """What a cell needs from, and gives back to, the notebook namespace."""

    reads: frozenset[str]
    """Names whose value from before the cell may be used."""
    assigns: tuple[str, ...]
    """Names bound at module level, in order of first binding, and names
    whose items or attributes are assigned (``a[i] = 1``, ``a.x += 1``)."""
    deletes: frozenset[str]
    """Names deleted at module level (``del x``)."""
    imports: tuple[str, ...]
    """Dotted names of the modules imported anywhere in the cell."""
    last_expression: bool
    """The last statement is an expression whose value the cell shows."""
    uses_await: bool
    """Top-level ``await``/``async for``/``async with`` (needs an event loop)."""
    star_import: bool = False
    """``from m import *`` binds names the analysis cannot know."""


def analyze_cell(source: str, filename: str = "<cell>") -> CellAnalysis:
    """Analyze `source` (plain Python). Raises SyntaxError for invalid code."""
    tree = ast.parse(source, filename=filename, mode="exec")
    walker = _ModuleWalker()
    walker.block(tree.body, walker.bound)
    last = bool(tree.body) and isinstance(tree.body[-1], ast.Expr) and not ends_with_semicolon(source)
    return CellAnalysis(
        reads=frozenset(walker.reads),
        assigns=tuple(dict.fromkeys(walker.assigns)),
        deletes=frozenset(walker.deletes),
        imports=tuple(dict.fromkeys(walker.imports)),
        last_expression=last,
        uses_await=_has_top_level_await(tree),
        star_import=walker.star_import,
    )


def ends_with_semicolon(source: str) -> bool:
    """True when the last code token is ``;`` (IPython then shows no value)."""
    last = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                            tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            last = tok
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def _has_top_level_await(tree: ast.Module) -> bool:
    def visit(node: ast.AST) -> bool:
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return True
        if isinstance(node, (*_FUNCTION_NODES, ast.ClassDef)):
            return False
        return any(visit(child) for child in ast.iter_child_nodes(node))

    return any(visit(stmt) for stmt in tree.body)


# ---- scopes ----------------------------------------------------------------------------------------------


@dataclass
class _Scope:
    kind: str  # "function" | "class"
    locals: set[str] = field(default_factory=set)
    global_names: set[str] = field(default_factory=set)
    nonlocal_names: set[str] = field(default_factory=set)
    parent: _Scope | None = None


def _target_names(target: ast.AST) -> Iterator[str]:
    """Names bound by an assignment target (``a, (b, *c) = ...``)."""
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _base_name(node: ast.AST) -> str | None:
    """`a` of ``a.b[c].d``."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _pattern_names(pattern: ast.AST) -> Iterator[str]:
    """Capture names of a match pattern, in source order."""
    for child in ast.iter_child_nodes(pattern):
        yield from _pattern_names(child)
    if isinstance(pattern, (ast.MatchAs, ast.MatchStar)) and pattern.name:
        yield pattern.name
    elif isinstance(pattern, ast.MatchMapping) and pattern.rest:
        yield pattern.rest


def _import_bindings(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    for alias in node.names:
        if alias.name == "*":
            continue
        if alias.asname:
            yield alias.asname
        elif isinstance(node, ast.Import):
            yield alias.name.split(".")[0]
        else:
            yield alias.name


def _function_bindings(body: Iterable[ast.AST]) -> tuple[set[str], set[str], set[str]]:
    """(bound, global, nonlocal) names of a function body, not descending
    into nested functions or classes (whose own names do count)."""
    bound: set[str] = set()
    global_names: set[str] = set()
    nonlocal_names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Global):
            global_names.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            nonlocal_names.update(node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            for dec in node.decorator_list:
                visit(dec)
            return
        elif isinstance(node, ast.Lambda):
            return
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update(_import_bindings(node))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.match_case):
            bound.update(_pattern_names(node.pattern))
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in body:
        visit(stmt)
    return bound - global_names - nonlocal_names, global_names, nonlocal_names


class _ModuleWalker:
    """Walks module-level statements in order, tracking definitely-bound names."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.reads: set[str] = set()
        self.assigns: list[str] = []
        self.deletes: set[str] = set()
        self.imports: list[str] = []
        self.star_import = False

    # -- module-level bookkeeping --

    def _read(self, name: str, bound: set[str]) -> None:
        if name not in bound:
            self.reads.add(name)

    def _bind(self, name: str, bound: set[str]) -> None:
        bound.add(name)
        self.assigns.append(name)
        self.deletes.discard(name)

    # -- statements --

    def block(self, stmts: Iterable[ast.stmt], bound: set[str]) -> None:
        for stmt in stmts:
            self.stmt(stmt, bound)

    def stmt(self, node: ast.stmt, bound: set[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._decorated(node, bound)
            self._arguments_outer(node.args, bound)
            if node.returns is not None:
                self.expr(node.returns, bound)
            self._function(node.args, node.body, bound, None)
            self._bind(node.name, bound)
        elif isinstance(node, ast.ClassDef):
            self._decorated(node, bound)
            for base in node.bases:
                self.expr(base, bound)
            for kw in node.keywords:
                self.expr(kw.value, bound)
            self._class_body(node.body, bound, None)
            self._bind(node.name, bound)
        elif isinstance(node, ast.Assign):
            self.expr(node.value, bound)
            for target in node.targets:
                self._assign_target(target, bound)
        elif isinstance(node, ast.AugAssign):
            self.expr(node.value, bound)
            if isinstance(node.target, ast.Name):
                self._read(node.target.id, bound)
                self._bind(node.target.id, bound)
            else:
                self._assign_target(node.target, bound)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expr(node.value, bound)
            self.expr(node.annotation, bound)
            if node.value is not None or not isinstance(node.target, ast.Name):
                self._assign_target(node.target, bound)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.expr(node.iter, bound)
            body_bound = set(bound)
            self._assign_target(node.target, body_bound)
            self.block(node.body, body_bound)
            self.block(node.orelse, set(bound))
        elif isinstance(node, ast.While):
            self.expr(node.test, bound)
            self.block(node.body, set(bound))
            self.block(node.orelse, set(bound))
        elif isinstance(node, ast.If):
            self.expr(node.test, bound)
            then_bound, else_bound = set(bound), set(bound)
            self.block(node.body, then_bound)
            self.block(node.orelse, else_bound)
            bound |= then_bound & else_bound
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr, bound)
                if item.optional_vars is not None:
                    self._assign_target(item.optional_vars, bound)
            self.block(node.body, bound)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":  # try / try-except*
            self._try(node, bound)
        elif isinstance(node, ast.Match):
            self.expr(node.subject, bound)
            for case in node.cases:
                case_bound = set(bound)
                for name in _pattern_names(case.pattern):
                    self._bind(name, case_bound)
                for sub in ast.walk(case.pattern):
                    if isinstance(sub, ast.MatchValue):
                        self.expr(sub.value, bound)
                    elif isinstance(sub, ast.MatchClass):
                        self.expr(sub.cls, bound)
                if case.guard is not None:
                    self.expr(case.guard, case_bound)
                self.block(case.body, case_bound)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                self.imports.append(alias.name)
            for name in _import_bindings(node):
                self._bind(name, bound)
        elif isinstance(node, ast.ImportFrom):
            if node.module and not node.level:
                self.imports.append(node.module)
            if any(a.name == "*" for a in node.names):
                self.star_import = True
            for name in _import_bindings(node):
                self._bind(name, bound)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self._read(target.id, bound)
                    bound.discard(target.id)
                    self.deletes.add(target.id)
                else:
                    self.expr(target, bound)
        elif isinstance(node, (ast.Global, ast.Nonlocal, ast.Pass, ast.Break, ast.Continue)):
            pass
        elif type(node).__name__ == "TypeAlias":  # Python 3.12+: type X = ...
            self.expr(node.value, bound)  # type: ignore[attr-defined]
            self._assign_target(node.name, bound)  # type: ignore[attr-defined]
        else:  # Expr, Return, Raise, Assert and anything newer: walk the expressions
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.expr(child, bound)

    def _try(self, node: Any, bound: set[str]) -> None:
        self.block(node.body, set(bound))
        for handler in node.handlers:
            if handler.type is not None:
                self.expr(handler.type, bound)
            handler_bound = set(bound)
            if handler.name:
                handler_bound.add(handler.name)  # bound inside the handler only
            self.block(handler.body, handler_bound)
        self.block(node.orelse, set(bound))
        self.block(node.finalbody, bound)

    def _decorated(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, bound: set[str]) -> None:
        for dec in node.decorator_list:
            self.expr(dec, bound)

    def _arguments_outer(self, args: ast.arguments, bound: set[str]) -> None:
        """Defaults and annotations are evaluated where the def is."""
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self.expr(default, bound)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.expr(arg.annotation, bound)

    def _assign_target(self, target: ast.AST, bound: set[str]) -> None:
        names = list(_target_names(target))
        for name in names:
            self._bind(name, bound)
        # ``a[i] = 1`` / ``a.x = 1`` read a and i, and change a in place: a
        # comes back like an assigned name (its remote copy was changed)
        for node in ast.walk(target):
            if isinstance(node, (ast.Subscript, ast.Attribute)):
                self.expr(node, bound)
                base = _base_name(node)
                if base is not None:
                    self.assigns.append(base)
                break

    # -- expressions at module level --

    def expr(self, node: ast.AST, bound: set[str]) -> None:
        self._expr(node, bound, None)

    def _expr(self, node: ast.AST, bound: set[str], scope: _Scope | None) -> None:
        """Walk an expression evaluated in `scope` (None: the module)."""
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self._resolve(node.id, bound, scope)
            return
        if isinstance(node, ast.NamedExpr):
            self._expr(node.value, bound, scope)
            self._bind_in(node.target.id, bound, scope)
            return
        if isinstance(node, ast.Lambda):
            self._arguments_in(node.args, bound, scope)
            self._function(node.args, [node.body], bound, scope)
            return
        if isinstance(node, _COMPREHENSIONS):
            self._comprehension(node, bound, scope)
            return
        for child in ast.iter_child_nodes(node):
            self._expr(child, bound, scope)

    def _arguments_in(self, args: ast.arguments, bound: set[str], scope: _Scope | None) -> None:
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self._expr(default, bound, scope)

    def _bind_in(self, name: str, bound: set[str], scope: _Scope | None) -> None:
        """A walrus binds in the nearest function scope, skipping comprehensions."""
        while scope is not None and scope.kind == "comprehension":
            scope = scope.parent
        if scope is None or name in scope.global_names:
            self._bind(name, bound)
        else:
            scope.locals.add(name)

    def _resolve(self, name: str, bound: set[str], scope: _Scope | None) -> None:
        innermost = scope
        while scope is not None:
            if name in scope.global_names:
                break
            visible = scope.kind != "class" or scope is innermost  # methods skip class scopes
            if visible and (name in scope.locals or name in scope.nonlocal_names):
                return
            scope = scope.parent
        self._read(name, bound)

    def _function(self, args: ast.arguments, body: Sequence[ast.AST], bound: set[str],
                  parent: _Scope | None) -> None:
        names, global_names, nonlocal_names = _function_bindings(body)
        params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
                  if a is not None}
        scope = _Scope("function", names | params, global_names, nonlocal_names, parent)
        for name in sorted(global_names & names_assigned_in(body)):
            self._bind(name, set())  # assigned when called: a binding, never definite
        for node in body:
            self._walk_function_node(node, bound, scope)

    def _walk_function_node(self, node: ast.AST, bound: set[str], scope: _Scope) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                self._expr(dec, bound, scope)
            self._arguments_in(node.args, bound, scope)
            self._function(node.args, node.body, bound, scope)
            return
        if isinstance(node, ast.ClassDef):
            for expr in [*node.decorator_list, *node.bases, *[k.value for k in node.keywords]]:
                self._expr(expr, bound, scope)
            self._class_body(node.body, bound, scope)
            return
        if isinstance(node, ast.expr):
            self._expr(node, bound, scope)
            return
        for child in ast.iter_child_nodes(node):
            self._walk_function_node(child, bound, scope)

    def _class_body(self, body: list[ast.stmt], bound: set[str], parent: _Scope | None) -> None:
        names, global_names, nonlocal_names = _function_bindings(body)
        scope = _Scope("class", set(), global_names, nonlocal_names, parent)
        for stmt in body:
            self._walk_function_node(stmt, bound, scope)
            # class bodies run in order: later statements see earlier bindings
            scope.locals |= names & names_assigned_in([stmt])

    def _comprehension(self, node: ast.AST, bound: set[str], scope: _Scope | None) -> None:
        generators: list[ast.comprehension] = node.generators  # type: ignore[attr-defined]
        self._expr(generators[0].iter, bound, scope)  # evaluated in the enclosing scope
        comp = _Scope("comprehension", set(), set(), set(), scope)
        for gen in generators:
            comp.locals.update(_target_names(gen.target))
        for i, gen in enumerate(generators):
            if i:
                self._expr(gen.iter, bound, comp)
            for cond in gen.ifs:
                self._expr(cond, bound, comp)
        if isinstance(node, ast.DictComp):
            self._expr(node.key, bound, comp)
            self._expr(node.value, bound, comp)
        else:
            self._expr(node.elt, bound, comp)  # type: ignore[attr-defined]


def names_assigned_in(nodes: Iterable[ast.AST]) -> set[str]:
    """Names stored anywhere in `nodes` (not inside nested functions or classes)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            return
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update(_import_bindings(node))
        for child in ast.iter_child_nodes(node):
            visit(child)

    for n in nodes:
        visit(n)
    return out


# ---- line-magic options ------------------------------------------------------------------------------------


def split_line_options(line: str, flags_with_value: Iterable[str],
                       bare_flags: Iterable[str]) -> tuple[list[str], str]:
    """Split ``%remote --num-cpus 2 f(x) + 1`` into (option tokens, expression).

    Options come first; the expression is the rest of the line, verbatim
    (its quotes and spacing survive). A value may be quoted (JSON for
    ``--resources``) or joined with ``=``. Raises ValueError when a flag
    lacks its value.
    """
    with_value = set(flags_with_value)
    bare = set(bare_flags)
    tokens: list[str] = []
    pos = _skip_space(line, 0)
    while line.startswith("-", pos):
        flag, after_flag = _shell_token(line, pos)
        name = flag.split("=", 1)[0]
        if name in bare or (name in with_value and "=" in flag):
            tokens.append(flag)
            pos = after_flag
        elif name in with_value:
            value_pos = _skip_space(line, after_flag)
            if value_pos >= len(line):
                raise ValueError(f"{flag} needs a value")
            value, pos = _shell_token(line, value_pos)
            tokens.extend([flag, value])
        else:
            break  # an expression that starts with '-' (e.g. -x + 1)
        pos = _skip_space(line, pos)
    return tokens, line[pos:].strip()


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _shell_token(text: str, pos: int) -> tuple[str, int]:
    """One whitespace-delimited token starting at `pos`, with '...' and "..."
    quoting (quotes removed); returns (token, position after it)."""
    out: list[str] = []
    quote = ""
    while pos < len(text):
        ch = text[pos]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and pos + 1 < len(text):
                pos += 1
                out.append(text[pos])
            else:
                out.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            break
        else:
            out.append(ch)
        pos += 1
    if quote:
        raise ValueError(f"unterminated quote in {text!r}")
    return "".join(out), pos
