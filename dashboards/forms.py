"""Forms of the server-rendered pages."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from orders.services import EDITABLE_BY

FIELD_LABELS = {
    "customer_name": _("Name"),
    "customer_phone": _("Phone"),
    "address": _("Address"),
    "note": _("Note"),
}


class OrderEditForm(forms.Form):
    """Hand corrections on the order page: only the fields the reader's role may edit are
    offered (customer service: contact details and notes; agents: the note)."""

    customer_name = forms.CharField(label=FIELD_LABELS["customer_name"], max_length=100)
    customer_phone = forms.CharField(label=FIELD_LABELS["customer_phone"], max_length=40, required=False)
    address = forms.CharField(label=FIELD_LABELS["address"], max_length=500, required=False)
    note = forms.CharField(
        label=FIELD_LABELS["note"], max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    reason = forms.CharField(label=_("Why"), max_length=1000, required=False)

    def __init__(self, *args, roles: frozenset, order, **kwargs) -> None:
        initial = {name: getattr(order, name) for name in EDITABLE_BY}
        initial["customer_phone"] = order.customer_phone or order.customer_phone_raw
        super().__init__(*args, initial=initial, **kwargs)
        self.editable = [name for name, allowed in EDITABLE_BY.items() if roles & allowed]
        for name in list(EDITABLE_BY):
            if name not in self.editable:
                del self.fields[name]

    def changes(self) -> dict[str, str]:
        """Only what differs from the order as shown: an unchanged field is not an edit."""
        return {name: self.cleaned_data[name] for name in self.editable if name in self.changed_data}
