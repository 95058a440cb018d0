#!/usr/bin/env python3
"""The page in a real browser: Debian's chromium driven by Selenium (no browser download).

Starts `deceive serve` on a free port, draws a 7 with pointer events, checks both models'
predicted digit on the page, presses Fool and waits for >= 0.99 on the page, attacks the
drawing, and saves screenshots in out/browser/. Then checks graceful shutdown: SIGINT while
a fooling stream runs must end the server with exit status 0.

    python3 scripts/browser_test.py .build/release/deceive
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from functools import partial

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".pydeps"))
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

OUT = "out/browser"
print = partial(print, flush=True)


def fail(message):
    print(f"browser test: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def start_server(binary):
    server = subprocess.Popen([binary, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = server.stdout.readline()
        match = re.match(r"listening on (http://\S+)", line)
        if match:
            return server, match.group(1)
        if server.poll() is not None:
            fail(f"deceive serve exited {server.returncode}: {server.stderr.read().strip()}")
    fail("deceive serve did not say it was listening within 60 s")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1500"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def draw(driver, pad, strokes, kind="mouse"):
    """Each stroke a list of (x, y) points in the pad's 280×280 coordinates, drawn with pointer events."""
    size = pad.size["width"]
    pointer = PointerInput(kind, kind)
    for points in strokes:
        actions = ActionBuilder(driver, mouse=pointer)
        def at(x, y):
            # Selenium's element offsets are from the element's centre.
            return int((x - 140) * size / 280), int((y - 140) * size / 280)
        x, y = at(*points[0])
        actions.pointer_action.move_to(pad, x, y).pointer_down()
        for (a, b), (c, d) in zip(points, points[1:]):
            for t in range(1, 9):
                x, y = at(a + (c - a) * t / 8, b + (d - b) * t / 8)
                actions.pointer_action.move_to(pad, x, y)
        actions.pointer_action.pointer_up()
        actions.perform()


def text_of(driver, element_id):
    return driver.find_element("id", element_id).text


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else ".build/release/deceive"
    os.makedirs(OUT, exist_ok=True)
    server, url = start_server(binary)
    driver = None
    try:
        driver = browser()
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_elements("id", "prediction-robust"))
        pad = driver.find_element("id", "pad")
        # A 7: a bar across the top, then a stroke down to the lower left.
        draw(driver, pad, [[(70, 60), (210, 60), (120, 240)]])
        def predicted(d):
            # Read in one script: the bars are re-rendered after every prediction.
            values = d.execute_script("return ['standard', 'robust'].map(n => (document.getElementById('prediction-' + n) || {dataset: {}}).dataset.prediction || '')")
            return values if all(values) else False
        wait.until(lambda d: predicted(d) and d.execute_script("return !predicting"))
        answers = predicted(driver)
        print(f"browser test: drew a 7, the page says standard {answers[0]}, robust {answers[1]}")
        if answers != ["7", "7"]:
            driver.save_screenshot(f"{OUT}/failed-draw.png")
            fail(f"the page read the drawn 7 as {answers}")
        driver.save_screenshot(f"{OUT}/drawn.png")

        # A finger: Clear, then a 1 drawn with touch pointer events.
        driver.find_element("id", "clear").click()
        draw(driver, pad, [[(150, 40), (135, 250)]], kind="touch")
        wait.until(lambda d: predicted(d) == ["1", "1"] and d.execute_script("return !predicting"))
        print("browser test: drew a 1 with touch events, both models say 1")
        driver.find_element("id", "clear").click()
        draw(driver, pad, [[(70, 60), (210, 60), (120, 240)]])
        wait.until(lambda d: predicted(d) == ["7", "7"] and d.execute_script("return !predicting"))

        Select(driver.find_element("id", "fool-target")).select_by_visible_text("3")
        driver.find_element("id", "fool").click()
        def confidence(d):
            value = d.find_element("id", "fool-result").get_attribute("data-confidence")
            return float(value) if value else None
        WebDriverWait(driver, 60).until(lambda d: confidence(d) is not None or "error" in d.find_element("id", "fool-status").get_attribute("class"))
        reached = confidence(driver)
        if reached is None or reached < 0.99:
            driver.save_screenshot(f"{OUT}/failed-fool.png")
            fail(f"fooling did not reach 0.99 on the page: {reached}, status '{text_of(driver, 'fool-status')}'")
        wait.until(lambda d: len(d.find_elements("css selector", "#fool-answers td[data-model]")) == 4)
        fooled = driver.execute_script("const cells = document.querySelectorAll(\"#fool-answers td[data-model='standard']\"); return cells[cells.length - 1].dataset.prediction")
        if fooled != "3":
            fail(f"after fooling, the standard model's verdict on the page is {fooled}, not 3")
        print(f"browser test: Fool reached p(3) = {reached:.4f} on the page ({text_of(driver, 'fool-result')})")

        Select(driver.find_element("id", "attack-method")).select_by_value("pgd")
        driver.execute_script("const e = document.getElementById('attack-eps'); e.value = '0.2'; e.dispatchEvent(new Event('input'));")
        driver.find_element("id", "attack").click()
        wait.until(lambda d: len(d.find_elements("css selector", "#attack-answers td[data-model]")) == 4)
        success = driver.find_element("id", "attack-status").get_attribute("data-success")
        print(f"browser test: PGD ε 0.2 on the drawing: {text_of(driver, 'attack-status')}")
        if success != "true":
            fail("PGD at ε = 0.2 did not flip the standard model's answer on the drawn 7")
        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1200, min(4000, height + 140))
        driver.save_screenshot(f"{OUT}/page.png")
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        if severe:
            fail(f"the browser console has errors: {severe[:3]}")
        # The page's own requests only: nothing but this server.
        hosts = driver.execute_script("return performance.getEntriesByType('resource').map(e => new URL(e.name).host)")
        if any(host != url.split("//")[1] for host in hosts):
            fail(f"the page made requests to other hosts: {set(hosts)}")
    finally:
        if driver is not None:
            driver.quit()

    # Graceful shutdown: SIGINT while a stream runs; the stream ends with its result, exit status 0.
    body = json.dumps({"target": 1, "within": 0.01, "confidence": 0.9999, "maxSteps": 5000, "method": "sign"}).encode()
    request = urllib.request.Request(f"{url}/api/fool", data=body, headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
    received = []
    def listen():
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                received.append(response.read().decode())
        except Exception as error:  # the assertion below reports it
            received.append(f"error: {error}")
    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(1.0)
    began = time.time()
    server.send_signal(signal.SIGINT)
    try:
        code = server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        fail("deceive serve did not stop within 15 s of SIGINT")
    listener.join(timeout=15)
    print(f"browser test: SIGINT stopped the server in {time.time() - began:.2f} s, exit status {code}")
    if code != 0:
        fail(f"deceive serve exited {code} on SIGINT: {server.stderr.read().strip()}")
    if not received or "event: result" not in received[0]:
        fail(f"the running stream did not end with a result event: {received[:1]}")
    print("browser test: passed; screenshots in out/browser/")


if __name__ == "__main__":
    main()
