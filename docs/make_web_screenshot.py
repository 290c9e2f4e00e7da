"""Write docs/web-upload.png, docs/web-read.png and docs/web-analyse.png: the analysts' page of `policytag serve`
after uploading the example documents (examples/docs, written for this project: not real policies).

It starts `policytag serve` on a free loopback port with a throw-away token and work folder, drives the page in
Debian's chromium through Playwright (no browser download), opens the evidence of one paragraph and takes the
pictures. Any policytag model directory works (the README's pictures were taken with the TF-IDF baseline,
`policytag train --model tfidf`).

    .venv/bin/python docs/make_web_screenshot.py --model runs/m3e-ihms [--out docs]
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, work: Path, token: str) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("policytag") or str(Path(sys.executable).with_name("policytag"))
    port = free_port()
    env = {**os.environ, "POLICYTAG_API_TOKEN": token, "POLICYTAG_WEB_DIR": str(work)}
    proc = subprocess.Popen([exe, "serve", "--model", str(model), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"policytag serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit("policytag serve did not become ready in 180 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="policytag model directory to serve")
    ap.add_argument("--out", default=ROOT / "docs", type=Path)
    args = ap.parse_args()
    from playwright.sync_api import expect, sync_playwright

    token = secrets.token_hex(8)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        proc, url = start_server(args.model, Path(work), token)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
                page.goto(url + "/")
                page.fill("#token-input", token)
                page.click("#token-save")
                expect(page.locator("#token-dialog")).to_be_hidden()
                page.set_input_files("#files", sorted((ROOT / "examples" / "docs").iterdir()))
                page.click("#submit")
                expect(page.locator("#progress")).to_have_attribute("data-status", "done", timeout=600_000)
                page.screenshot(path=str(args.out / "web-upload.png"))
                page.click("button[data-tab=read]")
                labelled = page.locator("#rows .para:has(.chip[data-label]):not(.heading)")
                target = labelled.nth(min(2, labelled.count() - 1))
                target.locator(".evidence-btn").click()
                expect(target.locator(".evidence")).not_to_contain_text("computing", timeout=300_000)
                target.scroll_into_view_if_needed()
                page.evaluate("window.scrollBy(0, -250)")
                page.screenshot(path=str(args.out / "web-read.png"))
                page.click("button[data-tab=analyse]")
                page.locator(".rtable[data-key='Table 3']").scroll_into_view_if_needed()
                page.screenshot(path=str(args.out / "web-analyse.png"))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for name in ("web-upload.png", "web-read.png", "web-analyse.png"):
        print(args.out / name)


if __name__ == "__main__":
    main()
