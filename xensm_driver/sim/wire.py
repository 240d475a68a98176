"""XAPI's XML-RPC wire format: envelopes, value encoding, method names.

XAPI encodes values the way ``ocaml-rpc`` does, not the way Python's
``xmlrpc.client.dumps`` does: strings are bare ``<value>x</value>``, 64-bit
ints are bare decimal strings, every failure is a ``{Status: Failure,
ErrorDescription: [...]}`` struct (never a ``<fault>``), and an async task's
result is the XML of its value, ``<value>OpaqueRef:...</value>``.
"""

from __future__ import annotations

import datetime
import xmlrpc.client
from typing import Any
from xml.sax.saxutils import escape

NULL_REF = 'OpaqueRef:NULL'
EPOCH = '19700101T00:00:00Z'


class XapiError(Exception):
    """An XAPI failure: ``ErrorDescription = [code, *params]``."""

    def __init__(self, code: str, *params: Any) -> None:
        self.details = [str(code)] + [str(p) for p in params]
        super().__init__(self.details)

    @classmethod
    def from_list(cls, details: list[Any]) -> XapiError:
        return cls(details[0], *details[1:])


def now_stamp() -> xmlrpc.client.DateTime:
    """The current time as XAPI sends it: ``20250319T04:16:24Z``."""
    t = datetime.datetime.now(datetime.UTC)
    return xmlrpc.client.DateTime(t.strftime('%Y%m%dT%H:%M:%SZ'))


def epoch_stamp() -> xmlrpc.client.DateTime:
    return xmlrpc.client.DateTime(EPOCH)


def encode_value(value: Any, out: list[str]) -> None:
    """Append the XAPI XML encoding of ``value`` to ``out``."""
    if isinstance(value, str):
        out.append('<value>%s</value>' % escape(value))
    elif value is True or value is False:
        out.append('<value><boolean>%d</boolean></value>' % int(value))
    elif isinstance(value, int):
        out.append('<value>%d</value>' % value)
    elif isinstance(value, float):
        out.append('<value><double>%s</double></value>' % ('%.16g' % value))
    elif isinstance(value, dict):
        out.append('<value><struct>')
        for k, v in value.items():
            out.append('<member><name>%s</name>' % escape(str(k)))
            encode_value(v, out)
            out.append('</member>')
        out.append('</struct></value>')
    elif isinstance(value, (list, tuple, set, frozenset)):
        out.append('<value><array><data>')
        for v in value:
            encode_value(v, out)
        out.append('</data></array></value>')
    elif isinstance(value, xmlrpc.client.DateTime):
        out.append('<value><dateTime.iso8601>%s</dateTime.iso8601></value>'
                   % value.value)
    elif value is None:
        out.append('<value></value>')
    else:
        raise TypeError('cannot encode %r' % (value,))


def value_xml(value: Any) -> str:
    """``<value>...</value>`` of one value: what a task's result holds."""
    out: list[str] = []
    encode_value(value, out)
    return ''.join(out)


def response_xml(status: dict[str, Any]) -> bytes:
    out = ["<?xml version='1.0'?>\n<methodResponse><params><param>"]
    encode_value(status, out)
    out.append('</param></params></methodResponse>\n')
    return ''.join(out).encode('utf-8')


def success(value: Any) -> bytes:
    return response_xml({'Status': 'Success',
                         'Value': '' if value is None else value})


def failure(details: list[str]) -> bytes:
    return response_xml({'Status': 'Failure', 'ErrorDescription': details})


def parse_request(body: bytes) -> tuple[str, tuple[Any, ...]]:
    """``(method, params)`` of an XML-RPC request; ValueError if malformed."""
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a 500
        raise ValueError(str(exc)) from exc
    if not method:
        raise ValueError('no methodName')
    return method, params


def canonical_method(name: str) -> str:
    """Turn underscore aliases into dotted names.

    ``VDI_create`` -> ``VDI.create``, ``Async_VDI_copy`` ->
    ``Async.VDI.copy``, ``event_from`` -> ``event.from``.
    """
    prefix = ''
    if name.startswith('Async.'):
        prefix, name = 'Async.', name[6:]
    elif name.startswith('Async_'):
        prefix, name = 'Async.', name[6:]
    if '.' not in name and '_' in name:
        cls, _, msg = name.partition('_')
        name = cls + '.' + msg
    return prefix + name
