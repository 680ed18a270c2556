"""The demo users (password 'demo') and their groups."""

from django.contrib.auth.hashers import make_password
from django.db import migrations

DEMO_USERS = {"alice": ["hikers"], "bob": ["hikers", "readers"], "carol": ["readers"]}
PASSWORD = "demo"


def create_demo_users(apps, schema_editor):
    User = apps.get_model("auth", "User")
    Group = apps.get_model("auth", "Group")
    password = make_password(PASSWORD)  # hashing is slow on purpose: once for all three
    for username, group_names in DEMO_USERS.items():
        user, _ = User.objects.get_or_create(username=username, defaults={"password": password})
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in group_names])


def remove_demo_users(apps, schema_editor):
    apps.get_model("auth", "User").objects.filter(username__in=DEMO_USERS).delete()
    names = {name for group_names in DEMO_USERS.values() for name in group_names}
    apps.get_model("auth", "Group").objects.filter(name__in=names).delete()


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_demo_users, remove_demo_users)]
