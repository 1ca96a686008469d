"""The journeys file: the shipped one implements SPEC §8, a bad one is rejected with file, line,
field and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from journeys.kit import SHIPPED
from nudge.errors import ConfigError
from nudge.journeys import JourneysFileError, load_journeys, parse_journeys

SPEC_JOURNEYS = {
    "order_confirmation", "shipping_notice", "password_reset", "email_verification", "welcome",
    "onboarding", "cart_abandonment", "browse_abandonment", "first_purchase", "post_purchase",
    "winback", "birthday", "anniversary", "seasonal",
}  # fmt: skip


def test_the_shipped_file_declares_every_journey_of_the_spec() -> None:
    """Every row of SPEC §8 is a journey, with Tokyo, ja, 1 h grace, the 2-per-24-h cap."""
    assert {j.name for j in SHIPPED.journeys} == SPEC_JOURNEYS
    assert (SHIPPED.default_timezone, SHIPPED.default_locale) == ("Asia/Tokyo", "ja")
    assert {j.grace_ms for j in SHIPPED.journeys} == {3_600_000}
    assert (SHIPPED.policies.cap_max, SHIPPED.policies.cap_window_ms) == (2, 86_400_000)
    assert SHIPPED.policies.attribution_window_ms == 7 * 86_400_000
    kinds = {j.name: j.kind for j in SHIPPED.journeys}
    transactional = {"order_confirmation", "shipping_notice", "password_reset",
                     "email_verification", "welcome"}  # fmt: skip
    assert {n for n, k in kinds.items() if k == "transactional"} == transactional


GOOD = """\
version: 1
journeys:
  thanks:
    kind: marketing
    trigger: {event: order.completed}
    steps:
      - {name: thank_you, template: first_purchase_thank_you, wait: {delay: 1h}}
"""


def _problems(text: str) -> list[tuple[int, str, str, str]]:
    with pytest.raises(JourneysFileError) as caught:
        parse_journeys(text, "j.yaml")
    return [(p.line, p.field, p.message, p.hint) for p in caught.value.problems]


def test_a_good_file_loads() -> None:
    """A minimal valid file parses into one journey with a 1 h wait."""
    config = parse_journeys(GOOD)
    assert config.journey("thanks").steps[0].wait.delay_ms == 3_600_000


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message_part", "hint_part"),
    [
        ("order.completed", "order.complete", 5, "journeys.thanks.trigger.event",
         "unknown event type", "did you mean 'order.completed'?"),
        ("delay: 1h", "delay: -1h", 7, "journeys.thanks.steps[0].wait.delay",
         "must not be negative", "positive"),
        ("delay: 1h", "delay: 1 hour", 7, "journeys.thanks.steps[0].wait.delay",
         "not a duration", "24h"),
        ("template: first_purchase_thank_you", "template: first_purchase_thanks", 7,
         "journeys.thanks.steps[0].template", "unknown template",
         "did you mean 'first_purchase_thank_you'?"),
        ("kind: marketing", "kind: marketting", 4, "journeys.thanks.kind", "not allowed",
         "did you mean 'marketing'?"),
        ("wait: {delay: 1h}", "wait: {delay: 1h, at: 10:00}", 7,
         "journeys.thanks.steps[0].wait.at", "as a number", "quote"),
        ("    steps:", "    stepz:", 6, "journeys.thanks.stepz", "unknown field",
         "did you mean 'steps'?"),
        # A pasted journey whose name was left unchanged would replace the first one.
        ("journeys:\n", "journeys:\n  thanks:\n    trigger: {event: user.signed_up}\n"
         "    steps: [{name: welcome, template: welcome}]\n", 6, "journeys.thanks",
         "written twice in one mapping (first on line 3)", "rename one"),
        ("wait: {delay: 1h}", "wait: {delay: 1h, delay: 2h}", 7,
         "journeys.thanks.steps[0].wait.delay", "written twice", "rename one"),
        ("    kind: marketing", "    kind: marketing\n    enabled: flase", 5,
         "journeys.thanks.enabled", "'flase' is not true or false", "true or false"),
        ("wait: {delay: 1h}", "wait: {delay: 1h}, params: {coupon_percnet: 15}", 7,
         "journeys.thanks.steps[0].params.coupon_percnet",
         "template 'first_purchase_thank_you' has no parameter 'coupon_percnet'",
         "did you mean 'coupon_percent'?"),
        ("template: first_purchase_thank_you", "template: welcome, params: {discount: 5}", 7,
         "journeys.thanks.steps[0].params.discount", "has no parameter", "takes no params"),
        ("wait: {delay: 1h}}", "wait: {delay: 1h}}\n    variants: [{name: a, weight: 1, "
         "params: {thank_you: {coupon_percnet: 15}}}]", 8,
         "journeys.thanks.variants[0].params.thank_you.coupon_percnet", "has no parameter",
         "did you mean 'coupon_percent'?"),
        # A coupon's validity: whole days, at least 1 (the engine would date it in the past).
        ("wait: {delay: 1h}", "wait: {delay: 1h}, params: {valid_days: 0}", 7,
         "journeys.thanks.steps[0].params.valid_days", "must be at least 1 (got 0)",
         "valid_days: 30"),
        ("wait: {delay: 1h}", "wait: {delay: 1h}, params: {valid_days: -14}", 7,
         "journeys.thanks.steps[0].params.valid_days", "must be at least 1 (got -14)",
         "valid_days: 30"),
        ("wait: {delay: 1h}", "wait: {delay: 1h}, params: {valid_days: 1.5}", 7,
         "journeys.thanks.steps[0].params.valid_days", "1.5 is not a whole number",
         "valid_days: 30"),
        ("wait: {delay: 1h}", "wait: {delay: 1h}, params: {valid_days: 30d}", 7,
         "journeys.thanks.steps[0].params.valid_days", "'30d' is not a whole number",
         "valid_days: 30"),
        ("wait: {delay: 1h}}", "wait: {delay: 1h}}\n    variants: [{name: a, weight: 1, "
         "params: {thank_you: {valid_days: true}}}]", 8,
         "journeys.thanks.variants[0].params.thank_you.valid_days", "True is not a whole number",
         "valid_days: 30"),
        # A percentage off: more than 0, at most 100 (150 % off would pay the customer).
        ("wait: {delay: 1h}", "wait: {delay: 1h}, params: {coupon_percent: 150}", 7,
         "journeys.thanks.steps[0].params.coupon_percent",
         "must be more than 0 and at most 100 (got 150)", "coupon_percent: 10"),
        ("wait: {delay: 1h}", "wait: {delay: 1h}, params: {coupon_percent: 0}", 7,
         "journeys.thanks.steps[0].params.coupon_percent",
         "must be more than 0 and at most 100 (got 0)", "coupon_percent: 10"),
        ("template: first_purchase_thank_you, wait: {delay: 1h}",
         "template: cart_reminder_2, wait: {delay: 1h}, params: {discount_percent: 10%}", 7,
         "journeys.thanks.steps[0].params.discount_percent", "'10%' is not a number",
         "discount_percent: 10"),
        # A cart discount's validity: a positive duration (`soon` used to fail only when sent).
        ("template: first_purchase_thank_you, wait: {delay: 1h}",
         "template: cart_reminder_2, wait: {delay: 1h}, params: {valid_for: soon}", 7,
         "journeys.thanks.steps[0].params.valid_for", "'soon' is not a duration",
         "valid_for: 48h"),
        ("template: first_purchase_thank_you, wait: {delay: 1h}",
         "template: cart_reminder_2, wait: {delay: 1h}, params: {valid_for: 0h}", 7,
         "journeys.thanks.steps[0].params.valid_for", "must be longer than zero (got 0h)",
         "valid_for: 48h"),
        ("template: first_purchase_thank_you, wait: {delay: 1h}",
         "template: cart_reminder_2, wait: {delay: 1h}, params: {valid_for: -2d}", 7,
         "journeys.thanks.steps[0].params.valid_for", "must be longer than zero (got -2d)",
         "valid_for: 48h"),
        ("template: first_purchase_thank_you, wait: {delay: 1h}",
         "template: cart_reminder_2, wait: {delay: 1h}, params: {valid_for: 48}", 7,
         "journeys.thanks.steps[0].params.valid_for", "48 has no unit", "valid_for: 48h"),
    ],
)  # fmt: skip
def test_a_bad_file_is_rejected_with_line_field_and_hint(
    old: str, new: str, line: int, field: str, message_part: str, hint_part: str
) -> None:
    """Each mistake is reported at its line and field, with a hint on how to fix it."""
    problems = _problems(GOOD.replace(old, new))
    matching = [p for p in problems if p[1] == field]
    assert matching, problems
    got_line, _, message, hint = matching[0]
    assert got_line == line
    assert message_part in message
    assert hint_part in hint


def test_params_enabled_and_merged_keys_that_are_right_are_accepted() -> None:
    """Known params, `enabled: false`, and a key overriding one merged from an anchor load."""
    text = GOOD.replace("    kind: marketing", "    kind: marketing\n    enabled: false")
    text = text.replace("wait: {delay: 1h}", "wait: {<<: &w {delay: 1h}, delay: 2h}, "
                        "params: {coupon_percent: 15, code_prefix: TY, "
                        "valid_days: 14}")  # fmt: skip
    journey = parse_journeys("templates: [mine]\n" + text).journey("thanks")
    assert not journey.enabled
    assert journey.steps[0].wait.delay_ms == 7_200_000
    assert journey.steps[0].params == {"coupon_percent": 15, "code_prefix": "TY", "valid_days": 14}
    # A template of the file's own receives whatever params it is given, checked or not.
    own = text.replace("template: first_purchase_thank_you", "template: mine")
    own = own.replace("coupon_percent", "anything").replace("valid_days: 14", "valid_days: 0")
    mine = parse_journeys("templates: [mine]\n" + own).journey("thanks")
    assert mine.steps[0].params == {"anything": 15, "code_prefix": "TY", "valid_days": 0}


def test_variant_weights_must_sum_to_one_or_a_hundred() -> None:
    """Weights 50 and 40 are rejected; 0.5 + 0.5 and 50 + 50 are accepted."""
    base = GOOD + "    variants:\n      - {name: a, weight: %s}\n      - {name: b, weight: %s}\n"
    parse_journeys(base % (0.5, 0.5))
    parse_journeys(base % (50, 50))
    (problem,) = _problems(base % (50, 40))
    assert problem[1] == "journeys.thanks.variants"
    assert "sum to 90" in problem[2]


def test_a_template_declared_in_the_file_is_known() -> None:
    """A template listed under `templates:` may be used by a step."""
    text = GOOD.replace("first_purchase_thank_you", "my_thanks")
    assert _problems(text)
    parse_journeys("templates: [my_thanks]\n" + text)


def test_all_problems_are_reported_at_once() -> None:
    """Two mistakes, two problems, and the error message lists both with file:line."""
    text = GOOD.replace("order.completed", "order.complete").replace("1h", "-1h")
    with pytest.raises(ConfigError) as caught:
        parse_journeys(text, "j.yaml")
    assert "j.yaml:5:" in str(caught.value)
    assert "j.yaml:7:" in str(caught.value)


def test_a_yaml_syntax_error_names_the_line() -> None:
    """Broken YAML is a JourneysFileError at the line of the problem, not a traceback."""
    problems = _problems("journeys:\n  a: [unclosed\n")
    assert problems[0][1] == "(syntax)"
    assert problems[0][0] >= 2


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that does not exist says so and how to fix it."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_journeys(tmp_path / "nope.yaml")
