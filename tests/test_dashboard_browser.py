"""The dashboard in a real browser: Debian's chromium, driven by selenium, against a real `tqcli serve`.

One browser serves the whole module (starting chromium costs more than a
test); each test has its own database and server. SQLite only: the page
talks to the HTTP API, whose answers are tested on both stores elsewhere
(tests/test_server*.py); nothing the browser does depends on the store.
"""

from __future__ import annotations

import os

import pytest

import tqcli
from tests.browser import chromium, missing_browser, page_ready, wait_for
from tests.serving import start_server
from tests.test_dlq import dead
from tqcli.clock import ManualClock

pytestmark = pytest.mark.sqlite_only

By = pytest.importorskip("selenium.webdriver.common.by").By


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module; missing chromium fails under CI (make test installs it) and skips elsewhere."""
    why = missing_browser()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the dashboard's browser tests cannot run: {why}")
        pytest.skip(why)
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture
def server(cli):
    """`tqcli serve` on this test's database."""
    cli.create_db()
    running = start_server(cli)
    yield running
    running.stop()


def sign_in(browser, url: str) -> None:
    """Forget the previous test's session, open a login URL and wait for the page to load."""
    browser.get(url.split("/?")[0] + "/healthz")
    browser.delete_all_cookies()
    browser.get(url)
    wait_for(lambda: page_ready(browser), "the dashboard to load", driver=browser)


def go(browser, hash_: str) -> None:
    """Show the view at `#/...` without reloading the page."""
    browser.execute_script("window.location.hash = arguments[0]", hash_)
    wait_for(lambda: page_ready(browser) and browser.execute_script("return window.location.hash") == hash_,
             f"view {hash_}", driver=browser)


def css(browser, selector: str) -> list:
    return browser.find_elements(By.CSS_SELECTOR, selector)


def click(browser, selector: str, what: str) -> None:
    """Click the element `selector` once it is there; found again when a live refresh re-drew it in between."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt() -> bool:
        found = css(browser, selector)
        if not found:
            return False
        try:
            found[0].click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(attempt, what, driver=browser)


def type_into(browser, selector: str, text: str) -> None:
    """Replace the text of the input `selector` with `text`, as a user would (focus, select all, type)."""
    from selenium.webdriver.common.keys import Keys

    click(browser, selector, selector)
    css(browser, selector)[0].send_keys(Keys.CONTROL, "a")
    css(browser, selector)[0].send_keys(text)


def message(browser) -> str:
    return browser.execute_script("const m = document.getElementById('message'); return m.hidden ? '' : m.textContent")


def token_for(cli, user: str) -> str:
    """A new API token acting as `user` (`tqcli token create` prints it as its last word)."""
    return cli.ok("token", "create", user).stdout.split()[-1]


def test_login_url_sets_an_httponly_cookie_drops_the_token_and_errors_show_in_the_message_line(browser, server, cli):
    sign_in(browser, server.login_url)
    assert browser.current_url == f"{server.url}/", "the token left the address bar by the redirect"
    cookie = browser.get_cookie("tqcli_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert browser.execute_script("return document.cookie") == "", "scripts cannot read the session"
    assert css(browser, "#state-cards") and css(browser, "#throughput-chart canvas"), "counts and the chart are drawn"
    assert "intact" in css(browser, "#audit-chain")[0].text

    go(browser, "#/tasks/4242")
    wait_for(lambda: "4242" in message(browser), "the API's 404 in the message line", driver=browser)
    assert "exit code 3" in message(browser)

    browser.delete_all_cookies()
    browser.get(f"{server.url}/")
    wait_for(lambda: css(browser, "#login-needed"), "the sign-in notice", driver=browser)
    assert "login URL" in css(browser, "#login-needed")[0].text
    browser.get(f"{server.url}/?token=tq_1_wrong")
    assert "tqcli serve" in browser.find_element(By.TAG_NAME, "body").text and browser.get_cookie("tqcli_session") is None


def test_a_task_and_a_dag_submitted_from_the_cli_show_without_a_reload_also_on_a_narrow_screen(browser, server, cli):
    sign_in(browser, server.login_url)
    go(browser, "#/tasks")
    browser.execute_script("window.stillTheSamePage = true")
    task_id = cli.submit("tests.jobs:noop", "--queue", "mail", "--tenant", "acme", "--name", "welcome-mail")
    row = wait_for(lambda: css(browser, f"#task-list tr[data-task='{task_id}']"), "the submitted task's row", driver=browser)[0]
    assert ["welcome-mail", "mail", "acme", "pending"] == [cell.text for cell in row.find_elements(By.TAG_NAME, "td")[1:5]]
    assert browser.execute_script("return window.stillTheSamePage") is True, "the row came without a reload"
    go(browser, "#/")
    wait_for(lambda: css(browser, "#queue-counts tr[data-queue='mail']"), "the new queue's counts", driver=browser)
    dag_file = cli.home / "etl.toml"
    dag_file.write_text('name = "etl"\n[tasks.extract]\ntarget = "tests.jobs:noop"\n'
                        '[tasks.load]\ntarget = "tests.jobs:noop"\ndepends_on = ["extract"]\n')
    dag_id = int(cli.ok("dag", "submit", str(dag_file)).stdout.split()[-1])
    go(browser, f"#/dags/{dag_id}")
    nodes = wait_for(lambda: css(browser, "svg.dag-graph .dag-node"), "the DAG's graph", driver=browser)
    assert sorted(node.get_attribute("data-state") for node in nodes) == ["pending", "pending"]
    assert len(css(browser, "svg.dag-graph path.edge")) == 1, "one edge: extract -> load"
    browser.set_window_size(480, 900)
    try:
        wide, window = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert wide <= window, "on a narrow screen the page itself does not scroll sideways (only wide tables do)"
    finally:
        browser.set_window_size(1280, 900)


def test_a_live_refresh_leaves_the_priority_being_typed_alone(browser, server, cli):
    """The task page redrawn by a live update keeps the focus and the selection of its priority field."""
    from selenium.webdriver.common.keys import Keys

    sign_in(browser, server.login_url)
    task_id = cli.submit("tests.jobs:noop")
    go(browser, f"#/tasks/{task_id}")
    wait_for(lambda: css(browser, "#task-detail .badge.state-pending"), "the task shown pending", driver=browser)
    click(browser, "#bump-priority", "the priority field")
    css(browser, "#bump-priority")[0].send_keys(Keys.CONTROL, "a")  # the user selects the proposed 10 to type over it
    cli.ok("bump", str(task_id), "--priority", "3")  # meanwhile someone else bumps it: the page redraws
    shown_priority = "return [...document.querySelectorAll('#task-detail dt')].find((d) => d.textContent === 'priority').nextElementSibling.textContent"
    wait_for(lambda: browser.execute_script(shown_priority) == "3", "the page redrawn with priority 3", driver=browser)
    assert browser.execute_script("return document.activeElement.id") == "bump-priority", "the field kept the focus"
    css(browser, "#bump-priority")[0].send_keys("7")
    assert css(browser, "#bump-priority")[0].get_attribute("value") == "7", "what was selected is typed over, not appended to"
    click(browser, "#bump-task", "the bump button")
    wait_for(lambda: "now has priority 7" in message(browser), "the bump's confirmation", driver=browser)
    assert cli.task(task_id)["priority"] == 7


def test_replay_works_for_an_operator_and_is_absent_for_a_viewer(browser, cli):
    cli.create_db()
    with tqcli.open(cli.db, clock=ManualClock()) as q:
        first, second = dead(q, 2, queue="etl")
    cli.ok("role", "grant", "root", "admin")
    cli.ok("role", "grant", "olga", "operator")
    cli.ok("role", "grant", "vic", "viewer")
    running = start_server(cli)
    try:
        sign_in(browser, f"{running.url}/?token={token_for(cli, 'olga')}")
        go(browser, "#/dlq")
        click(browser, f".replay-one[data-task='{first}']", "the replay button")
        wait_for(lambda: not css(browser, f"#dlq-list tr[data-task='{first}']"), "the replayed task to leave the DLQ", driver=browser)
        assert "replayed 1 task" in message(browser)
        go(browser, f"#/tasks/{first}")
        wait_for(lambda: css(browser, "#task-detail .badge.state-pending"), "the task shown pending", driver=browser)
        assert cli.task(first)["state"] == "pending"
        type_into(browser, "#bump-priority", "7")
        click(browser, "#bump-task", "the bump button")
        wait_for(lambda: "now has priority 7" in message(browser), "the bump's confirmation", driver=browser)
        click(browser, "#cancel-task", "the cancel button")
        assert cli.task(first)["state"] == "pending", "the first click only asks to confirm"
        click(browser, "#cancel-task.armed", "the armed cancel button")
        wait_for(lambda: css(browser, "#task-detail .badge.state-cancelled"), "the task shown cancelled", driver=browser)
        assert (cli.task(first)["state"], cli.task(first)["priority"]) == ("cancelled", 7)

        go(browser, "#/dlq")
        click(browser, "#replay-all-preview", "the replay-all preview button")
        wait_for(lambda: css(browser, "#preview-ids"), "the dry run's preview", driver=browser)
        assert css(browser, "#preview-ids")[0].text == str(second) and cli.task(second)["state"] == "failed"

        sign_in(browser, f"{running.url}/?token={token_for(cli, 'vic')}")
        go(browser, "#/dlq")
        wait_for(lambda: css(browser, f"#dlq-list tr[data-task='{second}']"), "the DLQ as a viewer", driver=browser)
        assert not css(browser, ".replay-one") and not css(browser, "#replay-all-preview") and css(browser, "#dlq-readonly")
        go(browser, f"#/tasks/{second}")
        wait_for(lambda: css(browser, "#task-detail .badge.state-failed"), "the failed task as a viewer", driver=browser)
        assert not css(browser, "#replay-task") and not css(browser, "#cancel-task")
        waiting = cli.submit("tests.jobs:noop")
        go(browser, f"#/tasks/{waiting}")
        wait_for(lambda: css(browser, "#task-detail .badge.state-pending"), "a pending task as a viewer", driver=browser)
        assert not css(browser, "#cancel-task") and not css(browser, "#bump-task")
    finally:
        running.stop()
