from django.db import migrations


def install(apps, schema_editor):
    from orders.defaults import install_defaults

    install_defaults(apps.get_model("orders", "SlaPolicy"), apps.get_model("orders", "ExceptionType"))


class Migration(migrations.Migration):
    dependencies = [("orders", "0007_sla_exceptions_outbound")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
