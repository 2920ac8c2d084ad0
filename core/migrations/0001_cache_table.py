"""The shared cache's table when the platform runs without Redis (core.cache.AtomicDatabaseCache,
CACHES in config/settings/base.py): created by every `migrate`, so no start path (make run,
the benchmark, a deployment without REDIS_URL) can miss it. With Redis configured, or the
memory cache of the tests, there is nothing to create."""

from django.core.management import call_command
from django.db import migrations


def cache_table_create(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies: list[tuple[str, str]] = []

    operations = [migrations.RunPython(cache_table_create, migrations.RunPython.noop)]
