from django.utils import translation

from dashboards.templatetags.paidan import flag_label, stage_label


def test_flags_and_stages_have_labels_and_unknown_codes_show_as_themselves():
    with translation.override("en"):
        assert flag_label("address_ambiguous") == "Address unclear"
        assert stage_label("picking") == "Picking"
        assert flag_label("rule:temp_warehouse") == "rule:temp_warehouse"
        assert stage_label("") == ""
