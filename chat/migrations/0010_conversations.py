"""Conversations: rooms get a kind (public, private, direct) and members; private messages move into the direct
conversation of their two people; a room someone has had open counts as joined by them."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.db.models import Max


def conversations_fill(apps, schema_editor):
    Room = apps.get_model("chat", "Room")
    Message = apps.get_model("chat", "Message")
    Membership = apps.get_model("chat", "Membership")
    pairs = Message.objects.filter(recipient__isnull=False).values_list("author_id", "recipient_id").distinct()
    for low, high in sorted({tuple(sorted(pair)) for pair in pairs}):
        # The name chat.models.direct_room_name() gives: "~" can be in no room's name.
        room, _ = Room.objects.get_or_create(name=f"~{low}-{high}", defaults={"kind": "direct"})
        between = Message.objects.filter(recipient__isnull=False).filter(
            models.Q(author_id=low, recipient_id=high) | models.Q(author_id=high, recipient_id=low)
        )
        between.update(room=room)
        # They were shown in every room page until now: nothing in the conversation is new to either of them.
        latest = between.aggregate(latest=Max("id"))["latest"] or 0
        for user_id in (low, high):
            Membership.objects.get_or_create(room=room, user_id=user_id, defaults={"last_read_id": latest})
    for room in Room.objects.annotate(latest=Max("messages__created_at")).exclude(latest=None):
        Room.objects.filter(pk=room.pk).update(last_message_at=room.latest)


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0009_presence_leaves_the_database"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="room",
            name="kind",
            field=models.CharField(
                choices=[
                    ("public", "public: anyone can read it"),
                    ("private", "private: only its members"),
                    ("direct", "direct: two people"),
                ],
                default="public",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="room",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                help_text="Who may make it private and add members (staff may too).",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="rooms_created",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="room",
            name="last_message_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="room",
            index=models.Index(fields=["kind", "-last_message_at"], name="chat_room_kind_recent"),
        ),
        migrations.RemoveConstraint(model_name="roomvisit", name="chat_visit_user_room_unique"),
        migrations.RenameModel(old_name="RoomVisit", new_name="Membership"),
        migrations.AlterField(
            model_name="membership",
            name="room",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to="chat.room"
            ),
        ),
        migrations.AlterField(
            model_name="membership",
            name="user",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memberships",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="membership",
            name="joined_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddConstraint(
            model_name="membership",
            constraint=models.UniqueConstraint(fields=("user", "room"), name="chat_membership_user_room_unique"),
        ),
        migrations.RunPython(conversations_fill, migrations.RunPython.noop),
    ]
