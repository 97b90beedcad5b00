from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RiskControlConfig(AppConfig):
    name = "riskcontrol"
    verbose_name = _("Risk control")
