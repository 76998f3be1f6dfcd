from keycloak_config.merge import _covers, same_policy
from keycloak_config.options import load as _load


def test_dicts_compare_as_subset() -> None:
    assert _covers({"a": 1, "b": 2, "id": "x"}, {"a": 1})
    assert not _covers({"a": 1}, {"a": 2})
    assert not _covers({}, {"a": None})


def test_scalar_lists_are_sets_object_lists_are_ordered() -> None:
    assert _covers(["pt", "en"], ["en", "pt"])
    assert not _covers(["en"], ["en", "pt"])
    assert _covers([{"n": 1, "x": 0}, {"n": 2}], [{"n": 1}, {"n": 2}])
    assert not _covers([{"n": 2}, {"n": 1}], [{"n": 1}, {"n": 2}])


def test_policy_rules_ignore_order() -> None:
    assert same_policy("a(1) and b", "b and a(1)")


def test_placeholders_are_filled_and_escaped() -> None:
    client = _load(
        "clients/umpass-activation.json",
        {"ACTIVATION_CLIENT_SECRET": 'we"ird\\secret'},
    )
    assert client["secret"] == 'we"ird\\secret'
    theme = _load("realm.json", {"REALM": "r"})["new_realm"]
    assert theme["realm"] == "r"
