from django.db import migrations


def install(apps, schema_editor):
    from riskcontrol.defaults import install_defaults

    install_defaults(apps.get_model("riskcontrol", "Rule"), apps.get_model("riskcontrol", "RiskPolicy"),
                     apps.get_model("agents", "Skill"))  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("riskcontrol", "0001_initial"), ("agents", "0003_agent_acceptance_rate_agent_avg_handling_minutes_and_more")]  # fmt: skip

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
