"""TypeValidator: a usage schema, parsed and compiled once, checking payloads.

    validator = TypeValidator({"tokens": "int", "tags": "List[str]"})
    validator.validate({"tokens": 3, "tags": ["a"]})   # None, or UsageValidationError
    validator.is_valid({"tokens": True, "tags": []})   # False: bool is not int

The compiled fast path decides valid/invalid; only when it says invalid does the error
collector walk the payload again to report every problem with its path (skipping valid
items with compiled per-type checks, so paths are built only where something is wrong).
"""

from __future__ import annotations

import difflib
import functools
import threading
from collections.abc import Mapping
from types import CodeType
from typing import Any, Literal

import cachetools

from ..errors import SchemaError, TypeStringError, UsageValidationError
from .compiler import RecordCheck, bind, compile_node_check, compile_record, record_check
from .nodes import NODE_TYPES, TypeNode, is_nullable
from .parser import parse
from .semantics import ErrorSink, collect_errors, describe

__all__ = ["TypeValidator"]

Fields = tuple[tuple[str, TypeNode], ...]
ExtraFields = Literal["forbid", "allow"]
EXTRA_FIELDS: tuple[ExtraFields, ...] = ("forbid", "allow")

MAX_MESSAGES_PER_FIELD = 20
PAYLOAD_KEY = "<payload>"

_parse_cache: cachetools.LRUCache[str, TypeNode] = cachetools.LRUCache(maxsize=1024)
_check_cache: cachetools.LRUCache[tuple[Fields, bool], CodeType] = cachetools.LRUCache(maxsize=256)
_lock = threading.Lock()


@cachetools.cached(_parse_cache, lock=_lock)
def _parse_cached(text: str) -> TypeNode:
    return parse(text)


@cachetools.cached(_check_cache, lock=_lock)
def _compile_cached(fields: Fields, allow_extra: bool) -> CodeType:
    return compile_record(fields, allow_extra)


def to_node(spec: object) -> TypeNode:
    """A type string, typing object or tree node, as a tree node."""
    if isinstance(spec, str):
        return _parse_cached(spec)
    if isinstance(spec, NODE_TYPES):
        return spec
    # typing-inspect is only needed for schemas written as typing objects; importing it
    # lazily keeps it off ``import aicm_manual``.
    from .from_typing import from_typing

    return from_typing(spec)


@functools.lru_cache(maxsize=1024)
def _suggestion(label: str, missing: tuple[str, ...], names: tuple[str, ...]) -> str:
    """A "did you mean" hint, preferring fields the payload lacks: a misspelt field is
    usually also a missing one. Cached because a misbehaving client repeats its typo."""
    for candidates in (missing, names):
        close = difflib.get_close_matches(label, candidates, n=1, cutoff=0.75)
        if close:
            return f" (did you mean {close[0]!r}?)"
    return " (not in the schema)"


class TypeValidator:
    """Validates usage payloads against a schema of field name -> type.

    Types are type strings (``"Dict[str, List[int]]"``), typing objects
    (``Dict[str, List[int]]``) or parsed trees; the whole schema may also be a pydantic
    model class or a ``TypedDict`` (see :func:`~.from_typing.schema_of_class`). A malformed
    type raises :class:`TypeStringError` (or :class:`SchemaError`) here, never at
    validation time. ``extra_fields="allow"`` accepts keys the schema does not name (their
    values unchecked); the default ``"forbid"`` reports them.
    """

    def __init__(self, schema: object, *, extra_fields: ExtraFields = "forbid") -> None:
        if extra_fields not in EXTRA_FIELDS:
            raise SchemaError(f"extra_fields must be 'forbid' or 'allow', got {extra_fields!r}")
        if isinstance(schema, type):
            from .from_typing import schema_of_class  # pydantic-free unless a class is given

            schema = schema_of_class(schema)
        if not isinstance(schema, Mapping):
            raise SchemaError(
                f"a schema must be a mapping of field -> type, a pydantic model class or a "
                f"TypedDict, got {describe(schema)}"
            )
        fields: list[tuple[str, TypeNode]] = []
        for name, spec in schema.items():
            if not isinstance(name, str) or not name:
                raise SchemaError(f"field names must be non-empty strings, got {name!r}")
            try:
                fields.append((name, to_node(spec)))
            except TypeStringError as exc:
                raise exc.located(field=name) from None
            except SchemaError as exc:
                raise SchemaError(f"field {name!r}: {exc}") from None
        self._fields: Fields = tuple(fields)
        self.extra_fields: ExtraFields = extra_fields
        self._names = frozenset(name for name, _ in fields)
        self._sorted_names = tuple(sorted(self._names))
        code = _compile_cached(self._fields, extra_fields == "allow")
        self._check: RecordCheck = record_check(code)
        # validate() is the same compiled code answering None or raising: one call on the
        # valid path instead of a method wrapping the check.
        self.validate = bind(code, self._raise_errors, None)  # type: ignore[method-assign,assignment]
        # Compiled per-node checks for the error collector, built on the first invalid
        # payload only. Keyed by id(): the nodes live as long as this validator, and
        # hashing a deep frozen tree on every item would cost more than the check.
        self._node_checks: dict[int, RecordCheck] = {}

    @property
    def schema(self) -> dict[str, str]:
        """The schema with every type in its canonical spelling."""
        return {name: str(node) for name, node in self._fields}

    @property
    def types(self) -> dict[str, TypeNode]:
        """The parsed type tree of each field."""
        return dict(self._fields)

    @property
    def required_fields(self) -> list[str]:
        return [name for name, node in self._fields if not is_nullable(node)]

    def validate(self, payload: object) -> None:
        """Return None for a valid payload; raise UsageValidationError listing every problem.

        (Each instance replaces this with its compiled twin; the behaviour is this.)
        """
        if not self._check(payload):
            self._raise_errors(payload)

    def _raise_errors(self, payload: object) -> None:
        error = self.find_errors(payload)
        if error is not None:
            raise error

    def is_valid(self, payload: object) -> bool:
        if type(payload) is dict:
            return self._check(payload)  # authoritative for a plain dict
        return self._check(payload) or self.find_errors(payload) is None

    def find_errors(self, payload: object) -> UsageValidationError | None:
        """Every problem of ``payload`` as an error (not raised), or None when it is valid."""
        if not isinstance(payload, Mapping):
            message = f"expected a mapping of field names to values, got {describe(payload)}"
            return UsageValidationError({PAYLOAD_KEY: [message]})
        if type(payload) is not dict and self._check(dict(payload)):
            return None  # a valid Mapping that is not exactly a dict (OrderedDict, proxies)
        errors: dict[str, list[str]] = {}
        missing: list[str] = []
        for name, node in self._fields:
            if name not in payload:
                if not is_nullable(node):
                    missing.append(name)
                    errors[name] = [f"{name}: missing required field of type {node}"]
                continue
            value = payload[name]
            if self._ok(node, value):
                continue
            sink = ErrorSink(MAX_MESSAGES_PER_FIELD)
            collect_errors(node, value, name, sink, self._ok)
            errors[name] = sink.result()
        extra: list[str] = []
        allow = self.extra_fields == "allow"
        for key in payload:
            if isinstance(key, str) and (allow or key in self._names):
                continue
            label = key if isinstance(key, str) else repr(key)
            extra.append(label)
            if allow:
                errors[label] = [f"{label}: field names must be strings"]
                continue
            hint = _suggestion(label, tuple(missing), self._sorted_names)
            errors[label] = [f"{label}: unexpected field{hint}"]
        if not errors:
            return None
        return UsageValidationError(errors, missing, extra)

    def _ok(self, node: TypeNode, value: object) -> bool:
        check = self._node_checks.get(id(node))
        if check is None:
            check = self._node_checks[id(node)] = compile_node_check(node)
        return check(value)

    def json_schema(self) -> dict[str, Any]:
        """A JSON Schema (draft 2020-12) of the payloads this validator accepts.

        It states our rules, not Python's: ``int`` is an integer and never a boolean,
        ``float`` any number but no boolean, a fixed tuple has exactly its length, only
        nullable fields may be omitted or null, and extra fields follow ``extra_fields``.
        """
        from .json_schema import record_schema  # only callers that ask pay for it

        return record_schema(self._fields, allow_extra=self.extra_fields == "allow")

    def __repr__(self) -> str:
        if self.extra_fields == "allow":
            return f"TypeValidator({self.schema!r}, extra_fields='allow')"
        return f"TypeValidator({self.schema!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # The compiled functions cannot be pickled; the trees can, and recompile.
        return (_rebuild, (dict(self._fields), self.extra_fields))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TypeValidator):
            return NotImplemented
        return self._fields == other._fields and self.extra_fields == other.extra_fields

    def __hash__(self) -> int:
        return hash((self._fields, self.extra_fields))


def _rebuild(fields: dict[str, TypeNode], extra_fields: ExtraFields) -> TypeValidator:
    return TypeValidator(fields, extra_fields=extra_fields)
