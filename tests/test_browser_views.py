"""The MCP Apps views in a real browser: headless Chromium (Debian's package) shows each view through a test host
page that speaks the host side of the protocol (the official AppBridge), with the tool's real input and result,
and forwards the view's tool calls to the real MCP server with the embedded sandbox. What a click does is checked
where it lands (the sandbox's requests, the ledger), not in the page. Screenshots go to test-artifacts/screenshots/.

Without Chromium or Playwright these tests skip and say why; CI sets CEKURA_LABS_REQUIRE_BROWSER=1, under which
they fail instead."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from browser_host import ASSETS, VIEWPORT, HostPage, expect, launch_chromium, mcp_session
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.demo import person_from_truth
from support import SandboxAdmin

FIXTURE_VIEW = (ASSETS / "fixture-view.html").read_text()
LOW_CONTRAST = (ASSETS / "low-contrast.js").read_text()
# A binary LLM judge of the sandbox's front-desk agent: what a person reviews first in the demo's clinic.
REVIEWED_METRIC = "Appointment Booked Correctly"
# What the person says about the first call the card shows (an insurance question the judge failed for not
# booking): the test checks the premise against the sandbox's truth before using it.
WHY_NOT_BOOKING = "the caller only asked about insurance; no appointment was requested, so booking does not apply."


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser for every test here. Module-scoped, not session-scoped: Playwright's synchronous driver keeps an
    asyncio loop marked running on the main thread while it is open, which the async tests elsewhere in the suite
    (anyio.run, pytest's anyio plugin) refuse to start under; the browser must be closed before they run."""
    with launch_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def host_page(chromium: Any) -> Iterator[HostPage]:
    context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        yield HostPage(context.new_page())
    finally:
        context.close()


@pytest.fixture
def host(host_page: HostPage, settings: Settings) -> Iterator[HostPage]:
    """The host page, its tool calls going to a fresh server (its own ledger) against the reset sandbox."""
    with mcp_session(settings) as mcp:
        host_page.start(mcp)
        try:
            yield host_page
            assert host_page.failures == [], host_page.failures
            # The premise of VIEWPORT: the host page never scrolled, so no click aimed at a button met it moved.
            assert host_page.page.evaluate("() => scrollY") == 0, "the host page scrolled: VIEWPORT is too short"
            assert host_page.blocked == [], f"the page tried to reach the network: {host_page.blocked}"
            # No script error and no request the view's Content-Security-Policy refused (a font, a fetch...).
            assert host_page.console_errors == [], host_page.console_errors
        finally:
            host_page.stop()


Test = TypeVar("Test", bound=Callable[..., None])


def diagnosed(test: Test) -> Test:
    """A failing test's message ends with what the host saw (its log, the backend's answers, console errors) and
    what the view shows: a wait that ran out says more than which element never came."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            test(*args, **kwargs)
        except Exception as error:
            error.add_note(kwargs["host"].diagnosis())
            raise

    return run  # type: ignore[return-value]


def review_ids(sandbox: SandboxAdmin) -> dict[str, int]:
    metric = sandbox.metric_named(REVIEWED_METRIC)
    return {"agent_id": int(sandbox.info()["main_agent_id"]), "metric_id": int(metric["id"])}


@diagnosed
def test_host_page_speaks_the_protocol_to_a_hand_written_view(host: HostPage, sandbox: SandboxAdmin) -> None:
    """The harness itself, against a view written without the SDK: initialize, tool input and result, a
    tools/call forwarded to the server and its answer rendered in place."""
    ids = review_ids(sandbox)
    host.mcp.structured("start_review", {**ids, "auto_improve": False})
    view = host.show("next_review", ids, html=FIXTURE_VIEW)
    root = view.get_by_test_id("fixture-view")
    root.and_(view.locator("[data-ready=true]")).wait_for()
    first = int(view.get_by_test_id("call-id").inner_text())
    assert view.get_by_test_id("metric-name").inner_text() == REVIEWED_METRIC
    assert view.locator(":root").get_attribute("data-theme") == "light"

    view.get_by_test_id("btn-skip").click()
    skipped = host.wait_for_tool_call("record_review")
    assert skipped["arguments"] == {**ids, "call_id": first, "skip": True}
    view.get_by_text(f"skipped call {first}").wait_for()
    shown_next = int(view.get_by_test_id("call-id").inner_text())
    assert shown_next == skipped["result"]["structuredContent"]["next"]["call"]["id"] != first
    # A skip stays in the session: no vote reached Cekura, and the server's own next pick is the call shown.
    assert sandbox.requests("POST", "mark_metric_vote") == []
    assert host.mcp.structured("next_review", ids)["call"]["id"] == shown_next

    host.set_theme("dark")
    view.locator(":root[data-theme=dark]").wait_for()
    assert host.console_errors == []


# ---- the review card -----------------------------------------------------------------------------


def ready(view: Any, testid: str) -> Any:
    """The view's root once it rendered a tool result (the views set data-ready on it)."""
    root = view.locator(f'[data-testid="{testid}"][data-ready="true"]')
    root.wait_for()
    return root


def open_review(host: HostPage, sandbox: SandboxAdmin, *, theme: str = "light") -> tuple[Any, dict[str, Any]]:
    """A review session on the sandbox's booking metric, its first call shown in the review card."""
    ids = review_ids(sandbox)
    host.mcp.structured("start_review", {**ids, "auto_improve": False})
    view = host.show("next_review", ids, theme=theme)
    ready(view, "review-card")
    return view, host.shown_result["structuredContent"]


def expect_call_shown(view: Any, call_id: int) -> None:
    """Wait until the card shows that call. The whole number: "Call 12" is also the start of "Call 123", and a
    match on the call just judged would let the test act on the card before it moved on."""
    expect(view.get_by_test_id("result")).to_contain_text(re.compile(rf"\bCall {call_id}(?!\d)"))


def votes(sandbox: SandboxAdmin) -> list[dict[str, Any]]:
    return sandbox.requests("POST", "mark_metric_vote")


def right_value(sandbox: SandboxAdmin, call: dict[str, Any]) -> str:
    """The value a careful person gives the call, from the sandbox's hidden truth, as the card's select names it."""
    expected = sandbox.truth(call["metric"]["id"])[str(call["id"])]["expected"]
    value = "N/A" if expected is None else str(expected).upper()
    assert value == "N/A" != call["metric"]["value"], f"premise: call {call['id']} is a misjudged N/A ({value})"
    return value


def is_focused(locator: Any) -> bool:
    return bool(locator.count()) and bool(locator.first.evaluate("e => e === document.activeElement"))


def tab_to(host: HostPage, target: Any, limit: int = 60) -> None:
    """Press Tab until `target` has the focus (from the host page into the view and through it)."""
    for _ in range(limit):
        if is_focused(target):
            return
        host.page.keyboard.press("Tab")
    expect(target).to_be_focused()


def background(view: Any) -> str:
    return str(view.locator("body").evaluate("e => getComputedStyle(e).backgroundColor"))


def low_contrast(view: Any) -> list[str]:
    """Text the view shows below WCAG 2's contrast minimum (tests/browser/low-contrast.js)."""
    return list(view.locator(":root").evaluate(LOW_CONTRAST))


def luminance(color: str) -> float:
    red, green, blue = (int(part) for part in re.findall(r"\d+", color)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


@diagnosed
def test_review_card_shows_the_call_under_review(host: HostPage, sandbox: SandboxAdmin) -> None:
    view, review = open_review(host, sandbox)
    call = review["call"]
    expect(view.get_by_test_id("metric-name")).to_contain_text(REVIEWED_METRIC)
    expect(view.get_by_test_id("metric-value")).to_have_text(call["metric"]["value"])
    expect(view.get_by_test_id("metric-explanation")).to_have_text(call["metric"]["explanation"])
    expect(view.get_by_test_id("why-picked")).to_have_text(review["why_picked"])
    progress = review["progress"]
    expect(view.get_by_test_id("progress")).to_have_text(f"{progress['feedback']} / {progress['needed']} feedback")
    # The transcript's turns, in order, each with its time; the turn the judge cited is marked.
    turns = call["transcript"]["turns"]
    shown = view.get_by_test_id("turn")
    expect(shown).to_have_count(len(turns))
    for i, turn in enumerate(turns):
        expect(shown.nth(i)).to_contain_text(turn["text"])
        expect(shown.nth(i)).to_have_attribute("data-t", turn["t"])
    cited = view.locator('[data-testid="turn"][data-cited="true"]')
    expect(cited).to_have_attribute("data-t", call["metric"]["moments"][0])
    # The card asks the person in their terms (the tool result's question is worded for the assistant).
    expect(view.get_by_test_id("question")).to_have_text(
        f"Is {call['metric']['value']} right for this call? If not: which value is, and which moment shows it?")
    assert votes(sandbox) == []
    host.screenshot("review-card-light")

    # The transcript is windowed around the cited moment; the whole call comes through the server's get_call.
    assert call["transcript"]["total_turns"] > len(turns)
    view.get_by_test_id("btn-whole-transcript").click()
    whole = host.wait_for_tool_call("get_call")
    assert whole["arguments"]["call_id"] == call["id"]
    every = whole["result"]["structuredContent"]["transcript"]["turns"]
    assert len(every) == call["transcript"]["total_turns"]
    expect(shown).to_have_count(len(every))
    expect(shown.last).to_contain_text(every[-1]["text"])
    expect(cited).to_have_attribute("data-t", call["metric"]["moments"][0])


@diagnosed
def test_disagree_with_a_reason_lands_a_vote_in_the_sandbox(host: HostPage, sandbox: SandboxAdmin) -> None:
    view, review = open_review(host, sandbox)
    call = review["call"]
    moment = call["metric"]["moments"][0]
    right = right_value(sandbox, call)
    view.get_by_test_id("btn-disagree").click()
    form = view.get_by_test_id("disagree-form")
    form.get_by_test_id("expected-value").select_option(right)
    form.locator(f'[data-testid="moment"][data-t="{moment}"]').click()
    reason = form.get_by_test_id("reason")
    expect(reason).to_have_value(f"At {moment} ")
    reason.press_sequentially(WHY_NOT_BOOKING)
    host.screenshot("review-card-disagree")
    form.get_by_test_id("btn-submit-disagree").click()

    recorded = host.wait_for_tool_call("record_review")
    assert recorded["arguments"]["agree"] is False
    # What reached Cekura: one vote on that call, thumbs down, the person's value and words.
    sent = votes(sandbox)
    assert len(sent) == 1, sent
    assert f"/{call['id']}/" in sent[0]["path"]
    body = sent[0]["body"]
    assert body["thumbs_up"] is False
    assert body["expected_value"] == (None if right == "N/A" else right == "TRUE")
    assert f"At {moment} {WHY_NOT_BOOKING}" in body["feedback"]
    assert sandbox.stats()["votes"] == 1  # the sandbox kept it
    # The ledger has the disagreement: the server's own progress counts it.
    assert host.mcp.structured("next_review", review_ids(sandbox))["progress"]["disagreed"] == 1
    # The card moves on to the call the server picked next, and says what was recorded.
    answer = recorded["result"]["structuredContent"]
    expect(view.get_by_test_id("status")).to_have_text(answer["recorded"])
    expect(view.get_by_test_id("progress")).to_have_text(f"1 / {answer['progress']['needed']} feedback")
    expect_call_shown(view, answer["next"]["call"]["id"])


@diagnosed
def test_skip_moves_on_without_a_vote(host: HostPage, sandbox: SandboxAdmin) -> None:
    view, review = open_review(host, sandbox)
    first = review["call"]["id"]
    view.get_by_test_id("btn-skip").click()
    skipped = host.wait_for_tool_call("record_review")
    assert skipped["arguments"]["skip"] is True and skipped["arguments"]["call_id"] == first
    following = skipped["result"]["structuredContent"]["next"]["call"]["id"]
    assert following != first
    expect_call_shown(view, following)
    assert votes(sandbox) == []
    # The session kept the skip: the server's own next pick is the call shown, and the skip is counted.
    again = host.mcp.structured("next_review", review_ids(sandbox))
    assert again["call"]["id"] == following and again["progress"]["skipped"] == 1


@diagnosed
def test_review_card_works_from_the_keyboard_alone(host: HostPage, sandbox: SandboxAdmin) -> None:
    """No mouse: Tab and Enter to open the disagree form, Escape to close it and d to open it again, a letter to pick
    the value, Tab and Enter on a moment, Ctrl+Enter to record; then 'a' agrees with the next call and 's' skips the
    one after."""
    view, review = open_review(host, sandbox)
    call = review["call"]
    keyboard = host.page.keyboard
    tab_to(host, view.get_by_test_id("btn-disagree"))
    # Where the focus is shows: the focused button keeps an outline (the browser's or the view's, never removed).
    outline = view.get_by_test_id("btn-disagree").evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline not in ("none", ""), outline
    keyboard.press("Enter")
    form = view.get_by_test_id("disagree-form")
    expected = form.get_by_test_id("expected-value")
    expect(expected).to_be_focused()
    # Escape closes the form; the d key opens it again.
    keyboard.press("Escape")
    expect(form).to_have_count(0)
    keyboard.press("d")
    expect(expected).to_be_focused()
    right = right_value(sandbox, call)
    keyboard.type(right[0])  # a select takes the first letter of an option, as in any form
    expect(expected).to_have_value(right)
    # Tab on to the cited moment's button, Enter inserts its time into the reason and moves focus there.
    moment = call["metric"]["moments"][0]
    target = form.locator(f'[data-testid="moment"][data-t="{moment}"]')
    tab_to(host, target)
    keyboard.press("Enter")
    reason = form.get_by_test_id("reason")
    expect(reason).to_be_focused()
    keyboard.type(WHY_NOT_BOOKING)
    keyboard.press("Control+Enter")
    recorded = host.wait_for_tool_call("record_review")
    assert recorded["arguments"]["agree"] is False
    assert [v["body"]["thumbs_up"] for v in votes(sandbox)] == [False]

    second = recorded["result"]["structuredContent"]["next"]["call"]
    expect_call_shown(view, second["id"])
    keyboard.press("a")
    agreed = host.wait_for_tool_call("record_review", 2)
    assert agreed["arguments"]["agree"] is True and agreed["arguments"]["call_id"] == second["id"]
    assert [v["body"]["thumbs_up"] for v in votes(sandbox)] == [False, True]

    third = agreed["result"]["structuredContent"]["next"]["call"]
    expect_call_shown(view, third["id"])
    keyboard.press("s")
    skipped = host.wait_for_tool_call("record_review", 3)
    assert skipped["arguments"]["skip"] is True and skipped["arguments"]["call_id"] == third["id"]
    assert len(votes(sandbox)) == 2


@diagnosed
def test_review_card_follows_the_host_theme(host: HostPage, sandbox: SandboxAdmin) -> None:
    """The host's theme wins over the system's: the browser says light while the host says dark, then the host
    switches to light while the browser says dark. Readable in both: every text meets WCAG 2's contrast minimum."""
    host.page.emulate_media(color_scheme="light")
    view, _ = open_review(host, sandbox, theme="dark")
    html = view.locator(":root")
    expect(html).to_have_attribute("data-theme", "dark")
    dark = background(view)
    assert luminance(dark) < 0.3, dark
    assert low_contrast(view) == []
    host.screenshot("review-card-dark")

    host.page.emulate_media(color_scheme="dark")
    host.set_theme("light")
    expect(html).to_have_attribute("data-theme", "light")
    light = background(view)
    assert luminance(light) > 0.7, light
    assert low_contrast(view) == []


# ---- the proposal and the report -------------------------------------------------------------------


def review_until_improved(host: HostPage, sandbox: SandboxAdmin) -> tuple[dict[str, int], dict[str, Any]]:
    """A review session answered as a careful person would (the demo's person, from the sandbox's hidden truth),
    through the server, until auto-improve ran: the ids and the improvement it proposed."""
    ids = review_ids(sandbox)
    truth = sandbox.truth(ids["metric_id"])
    host.mcp.structured("start_review", {**ids, "auto_improve": True})
    review = host.mcp.structured("next_review", ids)
    for _ in range(30):
        answer = person_from_truth(truth, review)
        recorded = host.mcp.structured("record_review", {**ids, "call_id": review["call"]["id"], **answer})
        if recorded.get("improvement"):
            return ids, recorded["improvement"]
        review = recorded["next"]
    raise AssertionError("auto-improve never ran")


def metric_description(sandbox: SandboxAdmin, metric_id: int) -> str:
    return str(sandbox.api("GET", f"/test_framework/v1/metrics-external/{metric_id}/")["description"])


def score_text(score: dict[str, Any]) -> str:
    """How the views write a Lab score: the share, then correct of total."""
    return f"{round(score['score'] * 100)}% ({score['correct']}/{score['total']})"


def diff_lines(diff: str, sign: str) -> list[str]:
    return [line[1:] for line in diff.splitlines() if line.startswith(sign) and not line.startswith(sign * 3)]


def show_proposal(host: HostPage, sandbox: SandboxAdmin) -> tuple[Any, dict[str, int], dict[str, Any]]:
    ids, improvement = review_until_improved(host, sandbox)
    assert improvement["done"], improvement["message"]
    view = host.show("poll_progress", {"progress_id": improvement["progress_id"], "metric_id": ids["metric_id"]})
    ready(view, "proposal-view")
    return view, ids, host.shown_result["structuredContent"]


@diagnosed
def test_proposal_view_shows_the_change_and_apply_patches_the_metric(host: HostPage, sandbox: SandboxAdmin) -> None:
    view, ids, proposal = show_proposal(host, sandbox)
    before = metric_description(sandbox, ids["metric_id"])
    assert proposal["proposed_description"] != before
    expect(view.get_by_test_id("score-old")).to_have_text(score_text(proposal["old_score"]))
    expect(view.get_by_test_id("score-new")).to_have_text(score_text(proposal["new_score"]))
    trigger = proposal["trigger_change"] or f"No change ({proposal['trigger_kind'] or 'always'})."
    expect(view.get_by_test_id("trigger-change")).to_have_text(trigger)
    # The diff side by side: each added line of the server's diff in the proposed column, marked added.
    added = diff_lines(proposal["diff"], "+")
    assert added, proposal["diff"]
    expect(view.locator('[data-testid="diff-new"].add')).to_have_text(added)
    expect(view.locator('[data-testid="diff-old"].del')).to_have_text(diff_lines(proposal["diff"], "-"))
    assert low_contrast(view) == []
    host.screenshot("proposal")
    host.set_theme("dark")
    expect(view.locator(":root")).to_have_attribute("data-theme", "dark")
    assert luminance(background(view)) < 0.3
    assert low_contrast(view) == []
    host.screenshot("proposal-dark")

    view.get_by_test_id("btn-apply").click()
    applied = host.wait_for_tool_call("apply_proposal")
    assert applied["arguments"] == {"metric_id": ids["metric_id"], "progress_id": proposal["progress_id"],
                                    "decision": "apply", "confirm": True, "accept_score_drop": False}
    # The sandbox's metric now has the proposed description.
    assert metric_description(sandbox, ids["metric_id"]) == proposal["proposed_description"]
    expect(view.get_by_test_id("status")).to_have_text(applied["result"]["structuredContent"]["message"])


@diagnosed
def test_dismiss_leaves_the_metric_as_it_was(host: HostPage, sandbox: SandboxAdmin) -> None:
    view, ids, _ = show_proposal(host, sandbox)
    before = metric_description(sandbox, ids["metric_id"])
    view.get_by_test_id("btn-dismiss").click()
    dismissed = host.wait_for_tool_call("apply_proposal")
    assert dismissed["arguments"]["decision"] == "dismiss"
    assert metric_description(sandbox, ids["metric_id"]) == before
    assert sandbox.requests("POST", "apply_optimisation_proposal") == []
    assert sandbox.requests("PATCH", "metrics-external") == []
    expect(view.get_by_test_id("status")).to_have_text(dismissed["result"]["structuredContent"]["message"])


@diagnosed
def test_proposal_view_answers_the_question_a_paused_run_asks(host: HostPage, sandbox: SandboxAdmin) -> None:
    """Cekura's documented auto-improve can pause with a question: the proposal view shows it, the person's answer
    goes to Cekura through answer_improvement_question, and the view shows the finished proposal."""
    if sandbox.info()["dialect"] != "documented":
        pytest.skip("only the documented dialect's auto-improve pauses with a question")
    sandbox.api("POST", "/_sandbox/auto-improve/questions", json={"count": 1})
    ids, paused = review_until_improved(host, sandbox)
    assert not paused["done"] and len(paused["questions"]) == 1, paused["message"]
    question = paused["questions"][0]
    view = host.show("poll_progress", {"progress_id": paused["progress_id"], "metric_id": ids["metric_id"]})
    ready(view, "proposal-view")
    asked = view.get_by_test_id("questions")
    expect(asked).to_contain_text(question["text"])
    expect(view.get_by_test_id("btn-apply")).to_have_count(0)
    answer = "Only calls where the caller asked for an appointment count; questions about bills do not."
    asked.get_by_test_id("answer").fill(answer)
    host.screenshot("proposal-question")
    asked.get_by_test_id("btn-answer").click()
    answered = host.wait_for_tool_call("answer_improvement_question")
    assert answered["arguments"] == {"progress_id": paused["progress_id"], "question_id": question["id"],
                                     "answer": answer, "metric_id": ids["metric_id"]}
    sent = sandbox.requests("POST", "process_feedbacks_answer")
    assert len(sent) == 1 and answer in str(sent[0]["body"])
    finished = answered["result"]["structuredContent"]
    assert finished["done"], finished["message"]
    expect(view.get_by_test_id("score-new")).to_have_text(score_text(finished["new_score"]))
    expect(view.get_by_test_id("btn-apply")).to_be_enabled()


def applied_and_checked(host: HostPage, sandbox: SandboxAdmin) -> tuple[dict[str, int], dict[str, Any]]:
    """The improvement applied and its regression check run (through the server): what the report view shows."""
    ids, improvement = review_until_improved(host, sandbox)
    assert improvement["done"], improvement["message"]
    host.mcp.structured("apply_proposal", {"metric_id": ids["metric_id"], "progress_id": improvement["progress_id"],
                                           "decision": "apply", "confirm": True})
    check = host.mcp.structured("validate_metric", ids)
    for _ in range(200):
        if check["status"] != "evaluating":
            break
        check = host.mcp.structured("validate_metric", {**ids, "check_id": check["check_id"]})
    assert check["status"] == "judging" and check["next_change"], check["message"]
    return ids, check


def matrix_cells(view: Any, group: str, testid: str) -> dict[tuple[str, str], int]:
    cells = view.locator(f'[data-testid="group-{group}"] [data-testid="{testid}"] td[data-row]')
    # One read of every cell (three round trips per cell cost seconds on a loaded machine).
    read = cells.evaluate_all("cells => cells.map(c => [c.dataset.row, c.dataset.col, c.innerText])")
    return {(row, col): int(text) for row, col, text in read}


def call_ids(links: Any) -> list[int]:
    """The calls a list of call links names, in order, read at once."""
    return [int(i) for i in links.evaluate_all("links => links.map(a => a.dataset.callId)")]


def nonzero(matrix: dict[str, dict[str, int]]) -> dict[tuple[str, str], int]:
    return {(row, col): n for row, cols in matrix.items() for col, n in cols.items() if n}


@diagnosed
def test_report_view_shows_the_check_and_lists_the_judged_fresh_changes(host: HostPage, sandbox: SandboxAdmin) -> None:
    ids, check = applied_and_checked(host, sandbox)
    view = host.show("validate_metric", {**ids, "check_id": check["check_id"]})
    ready(view, "report-view")
    reviewed = check["reviewed"]
    before, after = reviewed["before"], reviewed["after"]
    expect(view.get_by_test_id("report-status")).to_have_text("judging")
    group = view.get_by_test_id("group-reviewed")
    expect(group.get_by_test_id("agreement")).to_contain_text(
        f"{round(before['agreement'] * 100)}% → {round(after['agreement'] * 100)}%")
    expect(group.get_by_test_id("kappa")).to_contain_text(f"{before['kappa']:+.2f} → {after['kappa']:+.2f}")
    # The confusion matrices' numbers, cell by cell (cells the server has no count for read 0).
    for testid, scores in (("matrix-before", before), ("matrix-after", after)):
        shown = matrix_cells(view, "reviewed", testid)
        assert {cell: n for cell, n in shown.items() if n} == nonzero(scores["matrix"]), testid
    fixed_links = group.get_by_test_id("fixed-list").get_by_test_id("call-link")
    expect(fixed_links).to_have_count(len(reviewed["fixed"]))
    assert call_ids(fixed_links) == [c["call_id"] for c in reviewed["fixed"]]
    # A listed call opens in place: the server's get_call for it, its transcript shown.
    fixed_links.first.click()
    opened = host.wait_for_tool_call("get_call")
    assert opened["arguments"]["call_id"] == reviewed["fixed"][0]["call_id"]
    detail = view.get_by_test_id("call-detail")
    turns = opened["result"]["structuredContent"]["transcript"]["turns"]
    expect(detail.get_by_test_id("turn")).to_have_count(len(turns))
    expect(detail.get_by_test_id("turn").first).to_contain_text(turns[0]["text"])
    view.get_by_test_id("btn-close-detail").click()
    expect(detail).to_have_count(0)

    host.screenshot("report-judging")

    # The changed fresh results, judged one at a time: the first by a person who holds production's label was right
    # (the form: "it is wrong", the right label, why), the others from the sandbox's truth.
    truth = sandbox.truth(ids["metric_id"])
    judged: dict[int, bool] = {}
    change = check["next_change"]
    for count in range(1, check["fresh"]["changed"] + 1):
        current = view.get_by_test_id("next-change")
        expect(current.get_by_test_id("call-link")).to_have_attribute("data-call-id", str(change["call_id"]))
        expected = truth[str(change["call_id"])]["expected"]
        label = change["before"] if count == 1 else "N/A" if expected is None else str(expected).upper()
        if label.upper() == change["after"].upper():
            current.get_by_test_id("btn-change-right").click()
        else:
            current.get_by_test_id("btn-change-wrong").click()
            view.get_by_test_id("right-value").select_option(label)
            view.get_by_test_id("change-note").fill(f"Production had it right: {label}.")
            view.get_by_test_id("btn-submit-change").click()
        done = host.wait_for_tool_call("judge_change", count)
        judged[change["call_id"]] = bool(done["arguments"]["new_label_correct"])
        if count == 1:
            assert done["arguments"] == {"check_id": check["check_id"], "call_id": change["call_id"],
                                         "new_label_correct": False, "right_value": label,
                                         "note": f"Production had it right: {label}."}
        change = done["result"]["structuredContent"]["next_change"]
    expect(view.get_by_test_id("next-change")).to_have_count(0)

    # The server's check now holds those verdicts; the report lists each judged change where the server put it.
    final = host.mcp.structured("validate_metric", {**ids, "check_id": check["check_id"]})
    fresh = final["fresh"]
    assert fresh["judged"] == len(judged) == check["fresh"]["changed"]
    assert {c["call_id"] for c in fresh["fixed"]} == {call for call, right in judged.items() if right}
    assert len(fresh["regressed"]) == 1
    fresh_group = view.get_by_test_id("group-fresh")
    for testid, key in (("fixed-list", "fixed"), ("regressed-list", "regressed"), ("still-wrong-list", "still_wrong")):
        links = fresh_group.get_by_test_id(testid).get_by_test_id("call-link")
        expect(links).to_have_count(len(fresh[key]))
        assert sorted(call_ids(links)) == sorted(c["call_id"] for c in fresh[key])
    for testid, key in (("matrix-before", "before"), ("matrix-after", "after")):
        shown = matrix_cells(view, "fresh", testid)
        assert {cell: n for cell, n in shown.items() if n} == nonzero(fresh[key]["matrix"]), testid
    expect(view.get_by_test_id("report-status")).to_have_text(final["status"])
    assert low_contrast(view) == []
    host.screenshot("report")
    host.set_theme("dark")
    expect(view.locator(":root")).to_have_attribute("data-theme", "dark")
    assert luminance(background(view)) < 0.3
    assert low_contrast(view) == []
    host.screenshot("report-dark")


def select_label(value: Any) -> str:
    """A value as the views' selects name it."""
    return "N/A" if value in (None, "N/A") else str(value).upper()


@diagnosed
def test_a_whole_review_in_the_card_ends_in_a_proposal_applied_from_it(host: HostPage, sandbox: SandboxAdmin) -> None:
    """The labs cycle's heart inside the conversation: every verdict given in the card (agree, or disagree with the
    right value and why, as the demo's careful person answers), until the feedback starts auto-improve; the card then
    shows the proposal, and Apply there patches the metric."""
    ids = review_ids(sandbox)
    truth = sandbox.truth(ids["metric_id"])
    host.mcp.structured("start_review", {**ids, "auto_improve": True})
    view = host.show("next_review", ids)
    ready(view, "review-card")
    review = host.shown_result["structuredContent"]
    before = metric_description(sandbox, ids["metric_id"])
    improvement = None
    for count in range(1, 20):
        expect_call_shown(view, review["call"]["id"])
        answer = person_from_truth(truth, review)
        if answer["agree"]:
            view.get_by_test_id("btn-agree").click()
        else:
            view.get_by_test_id("btn-disagree").click()
            view.get_by_test_id("expected-value").select_option(select_label(answer["expected_value"]))
            view.get_by_test_id("reason").fill(answer["reason"])
            view.get_by_test_id("btn-submit-disagree").click()
        recorded = host.wait_for_tool_call("record_review", count)
        assert recorded["arguments"]["call_id"] == review["call"]["id"]
        outcome = recorded["result"]["structuredContent"]
        if outcome.get("improvement"):
            improvement = outcome["improvement"]
            break
        review = outcome["next"]
    assert improvement is not None and improvement["done"], "auto-improve never ran from the card"
    assert [v["body"]["thumbs_up"] for v in votes(sandbox)].count(False) == outcome["progress"]["disagreed"]

    proposal = view.get_by_test_id("improvement")
    expect(proposal.get_by_test_id("score-new")).to_have_text(score_text(improvement["new_score"]))
    expect(proposal.locator('[data-testid="diff-new"].add')).to_have_text(diff_lines(improvement["diff"], "+"))
    host.screenshot("review-card-proposal")
    assert metric_description(sandbox, ids["metric_id"]) == before
    proposal.get_by_test_id("btn-apply").click()
    applied = host.wait_for_tool_call("apply_proposal")
    assert applied["arguments"]["decision"] == "apply"
    assert metric_description(sandbox, ids["metric_id"]) == improvement["proposed_description"]
    expect(proposal.get_by_test_id("status")).to_have_text(applied["result"]["structuredContent"]["message"])


@diagnosed
def test_a_read_only_server_shows_views_without_write_buttons(host: HostPage, sandbox: SandboxAdmin,
                                                             settings: Settings) -> None:
    """`serve --read-only` offers no tool that writes, and its views offer no button that would call one."""
    with mcp_session(settings.model_copy(update={"read_only": True})) as read_only:
        host.start(read_only)
        ids = review_ids(sandbox)
        view = host.show("next_review", ids)
        ready(view, "review-card")
        call = host.shown_result["structuredContent"]["call"]
        expect(view.get_by_test_id("metric-explanation")).to_have_text(call["metric"]["explanation"])
        expect(view.get_by_test_id("question")).to_be_visible()
        for button in ("btn-agree", "btn-disagree", "btn-skip"):
            expect(view.get_by_test_id(button)).to_have_count(0)
        host.screenshot("review-card-read-only")


@diagnosed
def test_a_host_that_cannot_forward_tool_calls_gets_views_without_buttons(host: HostPage,
                                                                          sandbox: SandboxAdmin) -> None:
    """A host whose capabilities lack serverTools cannot pass a view's tool call on: the card then offers nothing that
    would need one (no verdict buttons, no whole-transcript button) and the person answers in the conversation."""
    ids = review_ids(sandbox)
    host.mcp.structured("start_review", {**ids, "auto_improve": False})
    view = host.show("next_review", ids, capabilities={"logging": {}})
    ready(view, "review-card")
    call = host.shown_result["structuredContent"]["call"]
    expect(view.get_by_test_id("metric-explanation")).to_have_text(call["metric"]["explanation"])
    expect(view.get_by_test_id("turn")).to_have_count(len(call["transcript"]["turns"]))
    for button in ("btn-agree", "btn-disagree", "btn-skip", "btn-whole-transcript"):
        expect(view.get_by_test_id(button)).to_have_count(0)
