"""The post-trade outbox moves to orders (orders.TradeOutbox, which orders owns and
revenue consumes): its rows are copied there, then revenue's PostTradeJob goes."""

from django.db import migrations


def copy_jobs(apps, schema_editor):
    PostTradeJob = apps.get_model("revenue", "PostTradeJob")
    TradeOutbox = apps.get_model("orders", "TradeOutbox")
    rows = [
        TradeOutbox(
            trade_id=job.trade_id,
            status=job.status,
            attempts=job.attempts,
            last_error=job.last_error,
            correlation_id=job.correlation_id,
            created_at=job.created_at,
            processed_at=job.processed_at,
        )
        for job in PostTradeJob.objects.order_by("id").iterator(chunk_size=2000)
    ]
    TradeOutbox.objects.bulk_create(rows, batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [
        ("revenue", "0006_delivery_exactly_once"),
        ("orders", "0002_trade_outbox"),
    ]

    operations = [
        migrations.RunPython(copy_jobs, migrations.RunPython.noop),
        migrations.DeleteModel(name="PostTradeJob"),
    ]
