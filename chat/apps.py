from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from chat import signals  # noqa: F401  (connects the receivers)
        from chat.db_thread import connection_kept

        connection_created.connect(connection_kept, dispatch_uid="chat_database_thread_connection")
