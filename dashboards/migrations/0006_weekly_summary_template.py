from django.db import migrations

CODE = "weekly_summary"


def install(apps, schema_editor):
    from dashboards.defaults import TEMPLATES

    NotificationTemplate = apps.get_model("dashboards", "NotificationTemplate")
    for code, channel, subject, body in TEMPLATES:
        if code == CODE:
            NotificationTemplate.objects.get_or_create(
                code=code, channel=channel, defaults={"subject": subject, "body": body}
            )


def remove(apps, schema_editor):
    apps.get_model("dashboards", "NotificationTemplate").objects.filter(code=CODE).delete()


class Migration(migrations.Migration):
    dependencies = [("dashboards", "0005_reports")]

    operations = [migrations.RunPython(install, remove)]
