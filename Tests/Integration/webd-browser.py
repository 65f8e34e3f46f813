#!/usr/bin/python3
"""The web console in headless Chromium (Debian's chromium + chromium-driver, Selenium).

  webd-browser.py URL USER PASSWORD SCREENSHOT_DIR

Environment: KILL_N1 and START_N1 (shell commands that stop and start n1's web server), CMCTL and RUNTIME_DIR (cmctl and its
--runtime-dir), FALL_SECONDS (how long the check may take to see it). Each step prints one
line; any failure exits 1 with the reason. Screenshots of each page go to SCREENSHOT_DIR.
"""
import json, os, subprocess, sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

url, user, password, shots = sys.argv[1:5]
os.makedirs(shots, exist_ok=True)

def fail(msg):
    print("FAIL:", msg)
    try:
        driver.save_screenshot(os.path.join(shots, "failure.png"))
        print("page at failure:", driver.current_url)
    except Exception:
        pass
    sys.exit(1)

def shot(name):
    driver.save_screenshot(os.path.join(shots, name + ".png"))

def wait(seconds, what, cond):
    try:
        # The live refresh replaces rows under the page's feet: an element found a moment ago
        # may be gone when read (stale), which is "not yet", not a failure.
        return WebDriverWait(driver, seconds, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException, NoAlertPresentException)).until(lambda d: cond())
    except Exception:
        # What the page shows against what the server answers now: a lost event or a stale answer.
        try:
            row = driver.execute_script("const r = document.querySelector(\"tr[data-node='n1']\"); return r ? r.outerHTML.slice(0, 200) : 'no n1 row'")
            server = driver.execute_script("const x = new XMLHttpRequest(); x.open('GET', location.href, false); x.send(); "
                                           "const m = x.responseText.match(/<tr[^>]*data-node=\"n1\"[^>]*>/); return m ? m[0] : 'no n1 row'")
            sys.stderr.write("diagnosis: page %s | server now %s | console %r\n" % (row, server, driver.get_log("browser")[-5:]))
        except Exception as e:
            sys.stderr.write("no diagnosis: %s\n" % e)
        fail("timed out after %ss waiting for: %s" % (seconds, what))

def console_errors():
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]

options = webdriver.ChromeOptions()
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900", "--ignore-certificate-errors",
          "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"]:
    options.add_argument(a)
options.binary_location = "/usr/bin/chromium"
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(30)
try:
    # 1. Any page without a session lands on the login page; a wrong password is refused.
    driver.get(url + "/nodes")
    wait(10, "the login page", lambda: "/login" in driver.current_url)
    shot("login")
    driver.find_element(By.NAME, "user").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys("not-the-password")
    driver.find_element(By.CSS_SELECTOR, "form button").click()
    wait(10, "the wrong password's message", lambda: "Wrong user name or password" in driver.page_source)
    print("ok: a wrong password is refused")

    driver.find_element(By.NAME, "user").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button").click()
    wait(10, "the nodes page after login", lambda: driver.current_url.endswith("/nodes"))
    cookie = driver.get_cookie("cm_session")
    if not cookie or not cookie.get("httpOnly") or not cookie.get("secure") or cookie.get("sameSite") != "Strict":
        fail("the session cookie is not HttpOnly, Secure, SameSite=Strict: %r" % cookie)
    print("ok: logged in; the cookie is HttpOnly, Secure, SameSite=Strict")

    # 2. The overview shows the nodes and the daemons.
    driver.get(url + "/")
    wait(10, "the overview with both nodes up", lambda: "0</b> of 2 nodes down" in driver.page_source)
    if "cm-healthd" not in driver.page_source or "cm-lbd" not in driver.page_source:
        fail("the overview does not list the daemons")
    shot("overview")
    print("ok: the overview shows 2 nodes, none down")

    # 3. Drain n2's server on the load balancer page; cmctl sees it.
    driver.get(url + "/lb")
    row = wait(10, "n2's server on the lb page", lambda: driver.find_element(By.CSS_SELECTOR, "tr[data-server='web/10.199.12.12:8080']"))
    shot("lb")
    row.find_element(By.CSS_SELECTOR, "button").click()
    alert = wait(5, "the confirmation", lambda: driver.switch_to.alert)
    alert.accept()
    wait(10, "n2 drained on the page", lambda: "drained" in driver.find_element(By.CSS_SELECTOR, "tr[data-server='web/10.199.12.12:8080']").get_attribute("class"))
    status = json.loads(subprocess.check_output(os.environ["CMCTL"] + " lb status --json --runtime-dir " + os.environ["RUNTIME_DIR"], shell=True))
    states = {s["address"]: s["state"] for b in status["backends"] for s in b["servers"]}
    if states.get("10.199.12.12:8080") != "drained":
        fail("cmctl lb status does not show n2 drained: %r" % states)
    shot("lb-drained")
    print("ok: drained in the page, drained in cmctl lb status")

    # 4. Add a node in the page; cm-pxed has it (cmctl node list). Then remove it.
    def inventory():
        out = subprocess.check_output(os.environ["CMCTL"] + " node list --json --runtime-dir " + os.environ["RUNTIME_DIR"], shell=True)
        return {n["name"]: n for n in json.loads(out)}
    driver.get(url + "/nodes")
    driver.find_element(By.CSS_SELECTOR, "details.add summary").click()
    driver.find_element(By.CSS_SELECTOR, "form.add-node input[name=mac]").send_keys("52:54:00:12:00:03")
    driver.find_element(By.CSS_SELECTOR, "form.add-node input[name=name]").send_keys("n3")
    driver.find_element(By.CSS_SELECTOR, "form.add-node input[name=address]").send_keys("10.199.12.13")
    shot("node-add")
    driver.find_element(By.CSS_SELECTOR, "form.add-node button").click()
    wait(10, "n3's page after adding it", lambda: driver.current_url.endswith("/nodes/n3"))
    n3 = inventory().get("n3")
    if not n3 or n3["mac"] != "52:54:00:12:00:03" or n3.get("address") != "10.199.12.13":
        fail("cmctl node list does not show n3 as added: %r" % n3)
    shot("node-n3")
    driver.find_element(By.CSS_SELECTOR, "form[action='/actions/node/remove'] button").click()
    wait(5, "the confirmation", lambda: driver.switch_to.alert).accept()
    wait(10, "the nodes page after removing n3", lambda: driver.current_url.endswith("/nodes"))
    if "n3" in inventory():
        fail("n3 is still in cm-pxed's inventory after removing it in the page")
    print("ok: added n3 in the page (cmctl node list shows it), removed it")

    # 5. A stopped web server turns its node red without a reload (Server-Sent Events).
    driver.get(url + "/nodes")
    wait(20, "n1 up on the nodes page", lambda: driver.find_element(By.CSS_SELECTOR, "tr[data-node='n1']").get_attribute("class") == "up")
    driver.execute_script("window.cmMarker = 'no reload'")
    started = time.time()
    subprocess.check_call(os.environ["KILL_N1"], shell=True)
    fall = float(os.environ.get("FALL_SECONDS", "5"))
    wait(fall + 15, "n1 red on the open page", lambda: driver.find_element(By.CSS_SELECTOR, "tr[data-node='n1']").get_attribute("class") == "down")
    if driver.execute_script("return window.cmMarker") != "no reload":
        fail("the page was reloaded")
    print("ok: n1 turned red %.1f s after its nginx stopped, without a reload" % (time.time() - started))
    shot("nodes-n1-down")

    # 6. A node's page with its charts (cm-healthd's metrics of its exporter).
    driver.get(url + "/nodes/n2")
    wait(20, "the CPU chart drawn", lambda: driver.execute_script(
        "const c = document.querySelector(\"canvas[data-series='cpu_percent']\"); return !!(window.Chart && c && Chart.getChart(c))"))
    time.sleep(0.5)
    shot("node-n2")
    print("ok: n2's page draws its charts")
    # A live refresh (n1's nginx back: a health event) brings new canvases; they are drawn again.
    driver.execute_script("document.getElementById('main').dataset.old = '1'")
    subprocess.check_call(os.environ["START_N1"], shell=True)
    wait(fall + 15, "n2's page refreshed by n1's recovery", lambda: driver.execute_script("return document.getElementById('main').dataset.old") is None)
    wait(10, "the CPU chart drawn again", lambda: driver.execute_script(
        "const c = document.querySelector(\"canvas[data-series='cpu_percent']\"); return !!(c && Chart.getChart(c))"))
    print("ok: a live refresh of n2's page draws its charts again")
    # 6b. A snapshot taken in the page (cm-snapd); the list shows it without a reload.
    driver.get(url + "/snapshots")
    wait(10, "the snapshots page", lambda: driver.find_element(By.CSS_SELECTOR, "section.snapshots[data-set='system'] form button"))
    driver.find_element(By.CSS_SELECTOR, "section.snapshots[data-set='system'] input[name=note]").send_keys("from the console")
    driver.find_element(By.CSS_SELECTOR, "section.snapshots[data-set='system'] form button").click()
    wait(5, "the confirmation", lambda: driver.switch_to.alert).accept()
    wait(20, "the snapshot listed", lambda: "from the console" in driver.find_element(By.CSS_SELECTOR, "section.snapshots[data-set='system'] table").text)
    shot("snapshots")
    print("ok: a snapshot taken in the page is listed")
    for page in ["/checks", "/vip", "/images", "/replication"]:
        driver.get(url + page)
        wait(10, page, lambda: driver.find_element(By.TAG_NAME, "h1"))
        shot(page.strip("/"))

    errors = console_errors()
    if errors:
        fail("console errors: %r" % errors)
    print("ok: no console errors")

    # 7. Logging out ends the session.
    driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait(10, "the login page after logout", lambda: "/login" in driver.current_url)
    driver.get(url + "/nodes")
    wait(10, "the login page again", lambda: "/login" in driver.current_url)
    print("ok: logged out; pages need a login again")
finally:
    driver.quit()
