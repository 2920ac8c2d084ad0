from django.apps import AppConfig
from django.db.backends.signals import connection_created

from core.fields import sqlite_money_functions_register
from core.money import money_context_install


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers system checks)

        # Every thread of every process (web, engine, worker) computes money in one
        # context wide enough for the columns (core.money).
        money_context_install()
        connection_created.connect(sqlite_money_functions_register, dispatch_uid="core.money_text")
