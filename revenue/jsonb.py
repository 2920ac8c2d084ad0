"""Atomic JSON updates in SQL: merge a patch into a JSON column inside the UPDATE itself.

``RevenueEvent.metadata`` is written by several services (delivery, retries, alerts,
staff actions). A read-modify-write in Python would lose a concurrent writer's keys, so
every change is a single ``UPDATE ... SET metadata = <merge>(metadata, patch)``:

- PostgreSQL: ``metadata || patch::jsonb`` (a shallow merge), minus removed keys;
- SQLite: ``json_patch(metadata, patch)`` (RFC 7396; a null in the patch removes the key).

A ``None`` value in a patch removes that key on both backends, so reads agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import NotSupportedError
from django.db.models import Case, Expression, F, Func, JSONField, TextField, Value, When


def _dumps(patch: Mapping[str, Any]) -> str:
    return json.dumps(dict(patch), cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))


class JsonMerge(Func):
    """``JsonMerge("metadata", {"a": 1, "gone": None})``: the column with ``a`` set and ``gone`` removed.

    ``patch`` may also be an expression producing a JSON object as text (see
    ``json_patch_per_row``); such a patch cannot remove keys.
    """

    output_field = JSONField()

    def __init__(self, field: str | Expression, patch: Mapping[str, Any] | Expression) -> None:
        self.removals: tuple[str, ...] = ()
        self.sqlite_patch: Expression | None = None
        if isinstance(patch, Mapping):
            self.removals = tuple(sorted(key for key, value in patch.items() if value is None))
            kept = {key: value for key, value in patch.items() if value is not None}
            patch_expression: Expression = Value(_dumps(kept), output_field=TextField())
            self.sqlite_patch = Value(_dumps(patch), output_field=TextField())
        else:
            patch_expression = patch
        source = F(field) if isinstance(field, str) else field
        super().__init__(source, patch_expression, output_field=JSONField())

    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> Any:
        raise NotSupportedError(f"JsonMerge is implemented for PostgreSQL and SQLite, not {connection.vendor}")

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        column, column_params = compiler.compile(self.source_expressions[0])
        patch, patch_params = compiler.compile(self.source_expressions[1])
        sql = f"(COALESCE({column}, '{{}}'::jsonb) || ({patch})::jsonb)"
        params = [*column_params, *patch_params]
        if self.removals:
            sql = f"({sql} - %s::text[])"
            params.append(list(self.removals))
        return sql, params

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        column, column_params = compiler.compile(self.source_expressions[0])
        patch_source = self.sqlite_patch if self.sqlite_patch is not None else self.source_expressions[1]
        patch, patch_params = compiler.compile(patch_source)
        return f"json_patch(COALESCE({column}, '{{}}'), {patch})", [*column_params, *patch_params]


class JsonPatchPerRow(Expression):
    """One JSON patch per row (``{pk: patch}``) as text, for a single UPDATE that writes
    a different value into each row (e.g. each event's own sequence number).

    PostgreSQL: the row's patch is looked up in two arrays (ids, patches), one
    parameter each, whatever the number of rows. Elsewhere: a ``CASE`` with one
    ``WHEN`` per row (Django builds that per row, which costs CPU on large batches).
    """

    output_field = TextField()

    def __init__(self, patches: Mapping[int, Mapping[str, Any]], *, key: str = "pk") -> None:
        super().__init__(output_field=TextField())
        self.patches = {int(pk): _dumps(patch) for pk, patch in patches.items()}
        self.key = key
        self.key_column: Any = None

    def resolve_expression(self, query: Any = None, *args: Any, **kwargs: Any) -> Any:
        resolved = super().resolve_expression(query, *args, **kwargs)
        resolved.key_column = F(self.key).resolve_expression(query, *args, **kwargs)
        return resolved

    def as_sql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        fallback = Case(
            *[When(**{self.key: pk}, then=Value(patch)) for pk, patch in self.patches.items()],
            default=Value("{}"),
            output_field=TextField(),
        ).resolve_expression(compiler.query)
        return compiler.compile(fallback)

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        column, column_params = compiler.compile(self.key_column)
        sql = f"COALESCE((%s::text[])[array_position(%s::bigint[], {column})], '{{}}')"
        return sql, [list(self.patches.values()), list(self.patches), *column_params]


def json_patch_per_row(patches: Mapping[int, Mapping[str, Any]], *, key: str = "pk") -> JsonPatchPerRow:
    """See ``JsonPatchPerRow``."""
    return JsonPatchPerRow(patches, key=key)
