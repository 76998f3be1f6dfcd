"""Numbered full-page screenshots of a browser test, for people to look at afterwards.

The folders under artifacts/browser/ are made by the `artifacts` and `shots_in` fixtures
(tests/conftest.py) when a test asks for them, never when a module is imported.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page


class Shots:
    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: screenshots go to a folder a fixture made")
        self.folder = folder
        self.count = 0

    def take(self, page: Page, name: str) -> None:
        self.count += 1
        page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=True)
