import random

import numpy as np
import pytest

from dispatch.engine.geo import distance_matrix_km, haversine_km
from dispatch.engine.intent import detect_skills, skill_matcher, skill_text

BEIJING = (39.9042, 116.4074)
SHANGHAI = (31.2304, 121.4737)


def test_haversine_beijing_to_shanghai_is_about_1067_km():
    assert haversine_km(*BEIJING, *SHANGHAI) == pytest.approx(1067.3, abs=0.5)
    assert haversine_km(*SHANGHAI, *SHANGHAI) == 0.0


def test_one_degree_of_latitude_is_about_111_km():
    assert haversine_km(30.0, 120.0, 31.0, 120.0) == pytest.approx(111.19, abs=0.05)


def test_distance_matrix_agrees_with_haversine_pair_by_pair():
    rng = np.random.default_rng(3)
    t_lat, t_lng = 31.2 + rng.normal(0, 0.2, 7), 121.4 + rng.normal(0, 0.2, 7)
    a_lat, a_lng = 31.2 + rng.normal(0, 0.2, 4), 121.4 + rng.normal(0, 0.2, 4)

    matrix = distance_matrix_km(t_lat, t_lng, a_lat, a_lng)

    assert matrix.shape == (7, 4)
    for i in range(7):
        for j in range(4):
            assert matrix[i, j] == pytest.approx(
                haversine_km(t_lat[i], t_lng[i], a_lat[j], a_lng[j]), abs=1e-3
            )


def test_distance_matrix_is_nan_where_either_side_has_no_coordinates():
    matrix = distance_matrix_km([31.2, None], [121.4, None], [31.2, None], [121.5, 121.4])

    assert matrix[0, 0] == pytest.approx(haversine_km(31.2, 121.4, 31.2, 121.5))
    assert np.isnan(matrix[0, 1]) and np.isnan(matrix[1, 0]) and np.isnan(matrix[1, 1])


def test_distance_matrix_refuses_mismatched_latitudes_and_longitudes():
    with pytest.raises(ValueError, match="same length"):
        distance_matrix_km([31.2, 31.3], [121.4], [31.2], [121.4])


AC_TABLE = {
    "ac_install": ["空调", "安装", "移机"],
    "water_heater": ["热水器"],
    "down_jacket": ["羽绒服", "充绒量"],
    "english": ["Refund"],
}


def test_keywords_in_an_order_note_map_to_the_skill():
    assert detect_skills("客厅的空调需要移机, 周六上门", AC_TABLE) == {"ac_install"}
    assert detect_skills("羽绒服充绒量是多少? 热水器也要修", AC_TABLE) == {"down_jacket", "water_heater"}
    assert detect_skills("请尽快发货", AC_TABLE) == frozenset()


def test_matching_is_on_nfkc_casefolded_text():
    assert detect_skills("I want a ＲＥＦＵＮＤ", AC_TABLE) == {"english"}
    assert detect_skills("refund please", {"english": ["ＲＥＦＵＮＤ"]}) == {"english"}


def test_empty_keywords_are_ignored_rather_than_matching_everything():
    assert detect_skills("任何文本", {"everything": ["", "  "], "ac_install": ["空调"]}) == frozenset()
    assert detect_skills("空调", {"nothing": []}) == frozenset()


def test_overlapping_and_nested_keywords_all_count():
    # "空调试机" holds 空调 and 调试, overlapping; "空调清洗" holds 空调 inside a longer keyword.
    table = {"ac": ["空调"], "debug": ["调试"], "ac_clean": ["空调清洗"]}

    assert detect_skills("空调试机", table) == {"ac", "debug"}
    assert detect_skills("预约空调清洗", table) == {"ac", "ac_clean"}


def test_detection_equals_substring_search_on_random_texts():
    # Given keywords over a tiny alphabet, so overlaps and nesting are everywhere
    rng = random.Random(11)
    alphabet = "空调安装移"
    table = {
        f"s{i}": ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(3)]
        for i in range(12)
    }
    detect = skill_matcher(table)
    for _ in range(300):
        text = "".join(rng.choice(alphabet + "x") for _ in range(rng.randint(0, 20)))
        expected = {code for code, words in table.items() if any(w in text for w in words)}
        assert detect(text) == expected, text


def test_skill_text_joins_parts_one_per_line_so_keywords_never_span_fields():
    text = skill_text("家电维修", None, "客户说空", ["调外机", " ", ""], "  ")

    assert text == "家电维修\n客户说空\n调外机"
    assert detect_skills(text, AC_TABLE) == frozenset()
