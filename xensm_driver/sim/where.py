"""The filter language of ``<Class>.get_all_records_where``.

Grammar (``ocaml/database/db_filter_parse.mly``)::

    expr  := 'true' | 'false' | expr 'and' expr | expr 'or' expr
           | 'not' expr | '(' expr ')' | value '=' value
    value := 'field' STRING | STRING

``or`` binds loosest, then ``and``, then ``not``.  Field names use ``__``
for namespaces (``name__label`` is ``name_label``).  Values compare as the
database's string form: bools ``true``/``false``, ints in decimal, sets as
``('a' 'b')`` and maps as ``(('k' 'v'))``.
"""

from __future__ import annotations

import re
import xmlrpc.client
from collections.abc import Callable
from typing import Any

from .wire import XapiError

_TOKEN = re.compile(r'\s*(?:(\()|(\))|(=)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')

Expr = tuple[Any, ...]


def db_string(value: Any) -> str:
    """The string the XAPI database holds for ``value``."""
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value
    if isinstance(value, dict):
        return '(%s)' % ' '.join("('%s' '%s')" % (db_string(k), db_string(v))
                                 for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return '(%s)' % ' '.join("'%s'" % db_string(v) for v in value)
    return '' if value is None else str(value)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _parse_error(text)
        lp, rp, eq, string, word = m.groups()
        if lp:
            out.append(('(', lp))
        elif rp:
            out.append((')', rp))
        elif eq:
            out.append(('=', eq))
        elif string is not None:
            out.append(('str', re.sub(r'\\(.)', r'\1', string)))
        else:
            w = word.lower()
            if w not in ('and', 'or', 'not', 'true', 'false', 'field'):
                raise _parse_error(text)
            out.append((w, word))
        pos = m.end()
    return out


def _parse_error(text: str) -> XapiError:
    return XapiError('INTERNAL_ERROR',
                     'Db_filter.Expression_error("%s", Parsing.Parse_error)'
                     % text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def take(self, kind: str) -> str:
        if self.peek() != kind:
            raise _parse_error(self.text)
        val = self.toks[self.i][1]
        self.i += 1
        return val

    def parse(self) -> Expr:
        if not self.toks:
            return ('true',)
        e = self.or_expr()
        if self.i != len(self.toks):
            raise _parse_error(self.text)
        return e

    def or_expr(self) -> Expr:
        e = self.and_expr()
        while self.peek() == 'or':
            self.take('or')
            e = ('or', e, self.and_expr())
        return e

    def and_expr(self) -> Expr:
        e = self.not_expr()
        while self.peek() == 'and':
            self.take('and')
            e = ('and', e, self.not_expr())
        return e

    def not_expr(self) -> Expr:
        if self.peek() == 'not':
            self.take('not')
            return ('not', self.not_expr())
        return self.atom()

    def atom(self) -> Expr:
        k = self.peek()
        if k == '(':
            self.take('(')
            e = self.or_expr()
            self.take(')')
            return e
        if k in ('true', 'false'):
            self.take(k)
            return (k,)
        left = self.value()
        self.take('=')
        right = self.value()
        return ('eq', left, right)

    def value(self) -> tuple[str, str]:
        if self.peek() == 'field':
            self.take('field')
            return ('field', self.take('str').replace('__', '_'))
        return ('lit', self.take('str'))


def parse(text: str) -> Expr:
    """Parse a filter expression; XapiError on a syntax error."""
    return _Parser(text).parse()


def fields_of(expr: Expr) -> set[str]:
    if expr[0] == 'eq':
        return {v[1] for v in expr[1:] if v[0] == 'field'}
    if expr[0] in ('and', 'or'):
        return fields_of(expr[1]) | fields_of(expr[2])
    if expr[0] == 'not':
        return fields_of(expr[1])
    return set()


def equalities(expr: Expr) -> list[tuple[str, str]]:
    """``field = literal`` terms every match must satisfy (for indexes)."""
    if expr[0] == 'and':
        return equalities(expr[1]) + equalities(expr[2])
    if expr[0] == 'eq':
        a, b = expr[1], expr[2]
        if a[0] == 'field' and b[0] == 'lit':
            return [(a[1], b[1])]
        if b[0] == 'field' and a[0] == 'lit':
            return [(b[1], a[1])]
    return []


def compile_expr(expr: Expr) -> Callable[[dict[str, Any]], bool]:
    """A predicate on a record (already holding every field)."""
    kind = expr[0]
    if kind == 'true':
        return lambda r: True
    if kind == 'false':
        return lambda r: False
    if kind == 'not':
        inner = compile_expr(expr[1])
        return lambda r: not inner(r)
    if kind in ('and', 'or'):
        a, b = compile_expr(expr[1]), compile_expr(expr[2])
        if kind == 'and':
            return lambda r: a(r) and b(r)
        return lambda r: a(r) or b(r)
    left, right = expr[1], expr[2]

    def val(v: tuple[str, str], r: dict[str, Any]) -> str:
        if v[0] == 'lit':
            return v[1]
        return db_string(r.get(v[1]))
    return lambda r: val(left, r) == val(right, r)
