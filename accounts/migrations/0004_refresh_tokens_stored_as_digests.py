"""Outstanding refresh tokens kept as digests (accounts.tokens.token_stored_form): the rows
written before kept each JWT itself, a login to whoever read the table."""

import hashlib

from django.db import migrations

PREFIX = "sha256:"


def tokens_to_digests(apps, schema_editor):
    OutstandingToken = apps.get_model("token_blacklist", "OutstandingToken")
    clear = OutstandingToken.objects.exclude(token__startswith=PREFIX).only("pk", "token")
    for rows in _chunks(clear.iterator(chunk_size=1000), 1000):
        for row in rows:
            row.token = PREFIX + hashlib.sha256(row.token.encode()).hexdigest()
        OutstandingToken.objects.bulk_update(rows, ["token"])


def _chunks(iterable, size):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_refresh_tokens_flush_schedule"),
        ("token_blacklist", "0013_alter_blacklistedtoken_options_and_more"),
    ]

    # Backwards: the digests stay (the JWTs cannot be recovered, and nothing needs them).
    operations = [migrations.RunPython(tokens_to_digests, migrations.RunPython.noop)]
