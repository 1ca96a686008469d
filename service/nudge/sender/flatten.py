"""One flat compiled template per mail part, from templates written with a layout and macros.

Authors keep writing `{% extends "ja/_layout.html" %}`, `{% import "ja/_macros.html" as m %}`
and `{{ m.items_table(items, currency) }}` (docs/templates.md). Rendered as written, every part
of every mail pays for Jinja's indirections: the import builds a module lookup, every
`m.items_table` is an attribute lookup and a `Macro` call with its own context, and the
inheritance renders the layout through block functions — for a mail, more time than its text.

`flatten` does that composition once, on the syntax tree, before compiling: the child's blocks
replace the layout's, each macro call that is a whole `{{ … }}` expression becomes the macro's
body in a `{% with %}` binding its parameters, and the imports disappear; attribute lookups
that can only find an item (`item.name` on a JSON object) ask for the item first. The result is
one template with the same nodes — autoescaping and `StrictUndefined` apply as before, and it
renders the same text (tests/unit/sender/test_fast_paths.py compares every template and locale
with Jinja's own rendering). A template using anything this does not handle (`super()`,
`self`, `caller`, keyword or default arguments, a free variable in a macro, scoped blocks,
statements outside blocks, …) is returned as None and compiled the ordinary way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from jinja2 import nodes
from jinja2.runtime import LoopContext, Undefined
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

Parse = Callable[[str], nodes.Template]
"""Parses the template with this name (the environment's loader and syntax)."""


class _Unsupported(Exception):
    """Something the flattener does not reproduce exactly: use Jinja's ordinary compilation."""


def flatten(tree: nodes.Template, parse: Parse, globals_: frozenset[str]) -> nodes.Template | None:
    """A flat equivalent of `tree` (layout, blocks and imported macros resolved), or None."""
    try:
        return _flatten(tree, parse, globals_, depth=0)
    except _Unsupported:
        return None


def _flatten(
    tree: nodes.Template, parse: Parse, globals_: frozenset[str], depth: int
) -> nodes.Template:
    if depth > 4:
        raise _Unsupported("layouts nested too deep")
    for scope in tree.find_all((nodes.For, nodes.With, nodes.Macro, nodes.CallBlock, nodes.Scope)):
        if scope.find(nodes.Block) is not None:
            # A block does not see the loop (or `with`) variables around it; inlined it would.
            raise _Unsupported("a block inside a loop, macro or with")
    for name in tree.find_all(nodes.Name):
        if name.name in ("self", "super", "caller", "varargs", "kwargs"):
            raise _Unsupported(name.name)
    macros: dict[str, dict[str, nodes.Macro]] = {}
    body: list[nodes.Node] = []
    parent: str | None = None
    blocks: dict[str, nodes.Block] = {}
    for node in tree.body:
        if isinstance(node, nodes.Import):
            if node.with_context or not isinstance(node.template, nodes.Const):
                raise _Unsupported("import with context or from an expression")
            macros[node.target] = _macros(parse(node.template.value))
        elif isinstance(node, nodes.Extends):
            if parent is not None or body or not isinstance(node.template, nodes.Const):
                raise _Unsupported("output before extends, or a dynamic parent")
            parent = node.template.value
        elif parent is not None:
            if isinstance(node, nodes.Block):
                if node.scoped or node.required or node.name in blocks:
                    raise _Unsupported("scoped, required or repeated block")
                blocks[node.name] = node
            elif not _blank(node):
                raise _Unsupported("a statement outside the blocks of a child template")
        else:
            body.append(node)
    if parent is not None:
        layout = _flatten(parse(parent), parse, globals_, depth + 1)
        body = _Blocks(blocks).transform_body(layout.body)
        inherited = _aliases(parse(parent), parse, depth + 1) - set(macros)
        if inherited & _nested_names(tree):
            # A child block using the layout's import: Jinja finds it in the context.
            raise _Unsupported(f"{inherited} imported by the layout, not by this template")
    elif depth == 0:
        for block in tree.find_all(nodes.Block):
            raise _Unsupported(f"block {block.name} in a template rendered directly")
    body = _Calls(macros, globals_).transform_body(body)
    if depth == 0:
        body = _Lookups().transform_body(body)
    return nodes.Template(body, lineno=1)


def _nested_names(tree: nodes.Template) -> set[str]:
    return {
        name.name for block in tree.find_all(nodes.Block) for name in block.find_all(nodes.Name)
    }


def _aliases(tree: nodes.Template, parse: Parse, depth: int) -> set[str]:
    """Names bound by the imports of a template and of its layouts."""
    if depth > 4:
        raise _Unsupported("layouts nested too deep")
    names = {node.target for node in tree.body if isinstance(node, nodes.Import)}
    for node in tree.body:
        if isinstance(node, nodes.Extends) and isinstance(node.template, nodes.Const):
            names |= _aliases(parse(node.template.value), parse, depth + 1)
    return names


def _blank(node: nodes.Node) -> bool:
    """Whitespace after `{% extends %}` (Jinja never renders it)."""
    return isinstance(node, nodes.Output) and all(
        isinstance(child, nodes.TemplateData) and not child.data.strip() for child in node.nodes
    )


def _macros(tree: nodes.Template) -> dict[str, nodes.Macro]:
    """The macros of an imported template, which must hold nothing else that renders."""
    found: dict[str, nodes.Macro] = {}
    for node in tree.body:
        if isinstance(node, nodes.Macro):
            found[node.name] = node
        elif not _blank(node):
            raise _Unsupported("an imported template with more than macros")
    return found


class _Blocks(NodeTransformer):
    """Puts the child's block bodies (or the layout's defaults) where the layout has blocks."""

    def __init__(self, blocks: dict[str, nodes.Block]) -> None:
        self.blocks = blocks

    def transform_body(self, body: list[nodes.Node]) -> list[nodes.Node]:
        return _visit_body(self, body)

    def visit_Block(self, node: nodes.Block) -> list[nodes.Node]:
        chosen = self.blocks.get(node.name, node)
        if chosen.scoped or chosen.required:
            raise _Unsupported("scoped or required block")
        return self.transform_body(list(chosen.body))


class _Calls(NodeTransformer):
    """Replaces `{{ alias.macro(args) }}` by the macro's body with its parameters bound."""

    def __init__(self, macros: dict[str, dict[str, nodes.Macro]], globals_: frozenset[str]):
        self.macros = macros
        self.globals = globals_

    def transform_body(self, body: list[nodes.Node]) -> list[nodes.Node]:
        result = _visit_body(self, body)
        for node in result:
            for name in node.find_all(nodes.Name):
                if name.name in self.macros:  # an alias used otherwise than as a whole call
                    raise _Unsupported(f"{name.name} used as a value")
        return result

    def visit_Output(self, node: nodes.Output) -> list[nodes.Node]:
        result: list[nodes.Node] = []
        pending: list[nodes.Expr] = []
        for child in node.nodes:
            macro = self._macro(child)
            if macro is None:
                pending.append(child)
                continue
            assert isinstance(child, nodes.Call)  # noqa: S101 - _macro checked it
            if pending:
                result.append(nodes.Output(pending, lineno=node.lineno))
                pending = []
            targets: list[nodes.Expr] = [nodes.Name(arg.name, "param") for arg in macro.args]
            inner = _Calls(self.macros, self.globals).transform_body(_clone(macro.body))
            result.append(nodes.With(targets, list(child.args), inner, lineno=child.lineno))
        if pending:
            result.append(nodes.Output(pending, lineno=node.lineno))
        return result

    def _macro(self, node: nodes.Expr) -> nodes.Macro | None:
        if not (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Getattr)
            and isinstance(node.node.node, nodes.Name)
            and node.node.node.name in self.macros
        ):
            return None
        macro = self.macros[node.node.node.name].get(node.node.attr)
        if macro is None:
            raise _Unsupported(f"no macro {node.node.attr}")
        if node.kwargs or node.dyn_args or node.dyn_kwargs or macro.defaults:
            raise _Unsupported("keyword, star or default arguments")
        if len(node.args) != len(macro.args):
            raise _Unsupported("a macro called with another number of arguments")
        bound = {arg.name for arg in macro.args}
        for loop in macro.find_all(nodes.For):
            targets = [loop.target, *loop.target.find_all(nodes.Name)]
            bound |= {n.name for n in targets if isinstance(n, nodes.Name)}
        for name in macro.find_all(nodes.Name):
            if name.ctx == "store" and name.name not in bound:
                # `{% set %}` and friends: Jinja's scoping of a conditional assignment would look
                # in the macro's module, the inlined one in the mail's variables.
                raise _Unsupported(f"assignment to {name.name} in macro {macro.name}")
        for name in macro.find_all(nodes.Name):
            if name.ctx == "load" and name.name not in bound and name.name not in self.globals:
                # Inside the macro it would be the macro module's (undefined); inlined it would
                # be the mail's variable of that name: not the same template any more.
                raise _Unsupported(f"free variable {name.name} in macro {macro.name}")
        return macro


# Attribute names of every kind of value a mail's variables can hold (JSON values and what the
# templates make of them): for these `x.name` must stay an attribute lookup first.
_VALUE_ATTRIBUTES: Final = frozenset(
    name
    for kind in (dict, list, str, int, float, bool, type(None), Markup, LoopContext, Undefined)
    for name in dir(kind)
)


class _Lookups(NodeTransformer):
    """`item.name` → `item["name"]` where that cannot change what is found.

    Jinja's `x.name` tries `getattr(x, "name")` first and then `x["name"]`; `x["name"]` tries
    the item first. For a JSON object the attribute lookup always fails — an exception per
    lookup, dozens per mail (item names, prices, quantities). When no kind of value a template
    sees has an attribute of that name, both orders find the same thing (or the same undefined,
    with the same message), so the item is asked for first.
    """

    def transform_body(self, body: list[nodes.Node]) -> list[nodes.Node]:
        return _visit_body(self, body)

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Node:
        target = self.visit(node.node)
        if node.attr in _VALUE_ATTRIBUTES or node.ctx != "load":
            return nodes.Getattr(target, node.attr, node.ctx, lineno=node.lineno)
        return nodes.Getitem(target, nodes.Const(node.attr), node.ctx, lineno=node.lineno)


def _clone(body: list[nodes.Node]) -> list[nodes.Node]:
    """A fresh copy of some nodes (a macro body is inlined once per call), sharing the
    environment they point to (`copy.deepcopy` would try to copy it too)."""
    return [_clone_node(node) for node in body]


def _clone_node(node: nodes.Node) -> nodes.Node:
    copied = object.__new__(type(node))
    for name in node.fields:
        value = getattr(node, name)
        if isinstance(value, nodes.Node):
            value = _clone_node(value)
        elif isinstance(value, list):
            value = [_clone_node(v) if isinstance(v, nodes.Node) else v for v in value]
        setattr(copied, name, value)
    for name in node.attributes:
        setattr(copied, name, getattr(node, name, None))
    return copied


def _visit_body(visitor: NodeTransformer, body: list[nodes.Node]) -> list[nodes.Node]:
    result: list[nodes.Node] = []
    for node in body:
        visited = visitor.visit(node)
        if visited is None:
            continue
        if isinstance(visited, list):
            result.extend(visited)
        else:
            result.append(visited)
    return result
