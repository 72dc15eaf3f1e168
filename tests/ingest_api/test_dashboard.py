"""The dashboard in a real browser: Debian's chromium, driven by selenium.

The test enters the account's API key in the page, uploads a CSV through the
API, watches the action's progress bar reach 100% in the page, opens the
action and waits for its failure-reason chart, and saves a screenshot
(``BULKFLOW_SCREENSHOT_DIR``, else the test's temporary folder).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import PATIENCE, Tenant, wait_for_status

pytestmark = pytest.mark.anyio

ROWS = 2_000


def test_the_page_carries_no_data_and_a_strict_policy(server: str) -> None:
    response = httpx.get(f"{server}/dashboard")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert '<script src="/dashboard/dashboard.js"' in response.text
    script = httpx.get(f"{server}/dashboard/dashboard.js").text
    assert "innerHTML" not in script  # API data goes in as text only
    assert "sessionStorage" in script
    assert "localStorage" not in script


async def test_a_csv_upload_reaches_100_percent_in_the_page(
    server: str,
    api: httpx.AsyncClient,
    tenant: Tenant,
    browser: webdriver.Chrome,
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(_open_with_key, browser, server, tenant.key)
    lines = ["email,first_name,lead_score"]
    for i in range(1, ROWS + 1):
        email = f"d{i}@example.com" if i % 25 else f"not-an-email-{i}"
        lines.append(f"{email},Dash {i},{i % 100 if i % 40 else 500}")
    lines += ["d1@example.com,Again,1"] * 3
    response = await api.post(
        "/v1/bulk-actions?entity=contact&action=upsert",
        content="\n".join(lines).encode(),
        headers={**tenant.headers, "content-type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    action_id = response.json()["id"]
    await asyncio.to_thread(_until_complete_in_page, browser, action_id)
    await wait_for_status(api, action_id, tenant, "completed")
    shot = await asyncio.to_thread(_open_action_and_shoot, browser, action_id, tmp_path)
    assert shot.stat().st_size > 10_000
    # The key stays in the tab's session storage, not in the page or its URL.
    assert tenant.key not in browser.page_source
    assert tenant.key not in browser.current_url


def _open_with_key(browser: webdriver.Chrome, server: str, key: str) -> None:
    browser.get(f"{server}/dashboard")
    field = WebDriverWait(browser, PATIENCE).until(lambda b: b.find_element(By.ID, "key"))
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    WebDriverWait(browser, PATIENCE).until(lambda b: b.find_element(By.ID, "main").is_displayed())


def _until_complete_in_page(browser: webdriver.Chrome, action_id: str) -> None:
    selector = f'progress[data-action-id="{action_id}"]'

    def at_100(b: webdriver.Chrome) -> bool:
        bars = b.find_elements(By.CSS_SELECTOR, selector)
        return bool(bars) and bars[0].get_attribute("value") == "100"

    WebDriverWait(browser, PATIENCE, poll_frequency=0.2).until(at_100)


def _open_action_and_shoot(browser: webdriver.Chrome, action_id: str, tmp_path: Path) -> Path:
    browser.find_element(By.CSS_SELECTOR, f'tr[data-action-id="{action_id}"]').click()
    WebDriverWait(browser, PATIENCE).until(
        lambda b: (
            "invalid_email" in b.find_element(By.ID, "reasons").text
            and b.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
        )
    )
    shot = tmp_path / "dashboard.png"
    browser.save_screenshot(str(shot))
    keep = os.environ.get("BULKFLOW_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "dashboard.png")
    return shot
