from django.db import migrations


def install(apps, schema_editor):
    from dashboards.defaults import install_defaults

    install_defaults(apps.get_model("dashboards", "NotificationTemplate"))


class Migration(migrations.Migration):
    dependencies = [("dashboards", "0003_notifications")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
