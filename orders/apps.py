from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = _("Orders")

    def ready(self) -> None:
        # Due times read the SLA policies from a per-process cache; a change saved in this
        # process takes effect at once, other processes see it within a few seconds.
        from orders.models import SlaPolicy
        from orders.sla_policies import clear_sla_cache

        post_save.connect(clear_sla_cache, sender=SlaPolicy, dispatch_uid="sla-policy-save")
        post_delete.connect(clear_sla_cache, sender=SlaPolicy, dispatch_uid="sla-policy-delete")
