from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class RiskControlConfig(AppConfig):
    name = "riskcontrol"
    verbose_name = _("Risk control")

    def ready(self) -> None:
        # Screening keeps its configuration for a few seconds per process; a change saved in
        # this process takes effect at once.
        from agents.models import Region
        from orders.models import Warehouse
        from riskcontrol.models import DeliveryRestriction, RiskPolicy, Rule
        from riskcontrol.selectors import clear_config

        for model in (Rule, RiskPolicy, DeliveryRestriction, Warehouse, Region):
            post_save.connect(clear_config, sender=model, dispatch_uid=f"risk-config-save-{model.__name__}")
            post_delete.connect(
                clear_config, sender=model, dispatch_uid=f"risk-config-delete-{model.__name__}"
            )
