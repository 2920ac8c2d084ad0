"""The check every batch of an engine process makes first (orders.sequencer.leadership,
`LeaderFence`): the shard's batches share a lock that a new leader takes alone once, to
wait for the batches of the engine before it, and the session holding the shard's lock
must still be this engine's own, else the batch fails before it wrote anything
(SQLSTATE 55000). PostgreSQL only: on SQLite the lock is a file the process holds until
it exits, and nothing else can take it meanwhile."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION orders_engine_leader_check(
    batches_key bigint, lock_high oid, lock_low oid, leader_pid integer
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(batches_key);
    IF NOT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock' AND pid = leader_pid
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND classid = lock_high AND objid = lock_low AND objsubid = 1
    ) THEN
        RAISE EXCEPTION 'this engine no longer leads its shard: its session of the lock ended'
            USING ERRCODE = '55000';
    END IF;
END
$$"""
DROP = "DROP FUNCTION IF EXISTS orders_engine_leader_check(bigint, oid, oid, integer)"


def leader_check_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def leader_check_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_fk_indexes_covered"),
    ]

    operations = [migrations.RunPython(leader_check_create, leader_check_drop)]
