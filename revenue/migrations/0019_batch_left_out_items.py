from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("revenue", "0018_event_held_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="deliverybatch",
            name="left_out_item_ids",
            field=models.JSONField(default=list),
        ),
    ]
