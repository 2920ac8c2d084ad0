"""The check every batch of an engine process makes first (orders.sequencer.leadership,
`LeaderFence`): the shard's batches share a lock that a new leader takes alone once, to
wait for the batches of the engine before it, and the session that took the shard's lock
must still hold the key this engine drew when it took it, else the batch fails before it
wrote anything (SQLSTATE 55000). PostgreSQL only: on SQLite the lock is a file the process holds until
it exits, and nothing else can take it meanwhile."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION orders_engine_leader_check(batches_key bigint, session_key bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(batches_key);
    -- Held by the leader's session while it lives: a try that succeeds finds it ended.
    IF pg_try_advisory_xact_lock_shared(session_key) THEN
        RAISE EXCEPTION 'this engine no longer leads its shard: its session of the lock ended'
            USING ERRCODE = '55000';
    END IF;
END
$$"""
DROP = "DROP FUNCTION IF EXISTS orders_engine_leader_check(bigint, bigint)"


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
