from keycloak_config.apply import _covers, _load, _policy_rules


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
    assert _policy_rules("a(1) and b") == _policy_rules("b and a(1)")


def test_placeholders_are_filled_and_escaped() -> None:
    client = _load(
        "clients/umpass-activation.json",
        {"ACTIVATION_CLIENT_SECRET": 'we"ird\\secret'},
    )
    assert client["secret"] == 'we"ird\\secret'
    profile = _load("user-profile.json", {})
    assert profile["attributes"][0]["displayName"] == "${username}"  # Keycloak's own syntax kept
