"""The nbgrader web UI end to end, in headless Chromium: Formgrader's buttons grade through tito.

One JupyterLab (127.0.0.1, random port and token) serves a scratch copy of the course with an honest,
a blank and an answer-importing submission of module 01. Clicking Autograde must give 100 / 0 / 0 (what
`tito autograde` gives: sandbox, own package copy, trusted comparison, even when nbgrader_config.py names
the venv's plain kernel), Generate Feedback must write
tito's redacted feedback (no hidden-test line), and Validate must work on a student release.
Screenshots go to $TINYTORCH_SCREENSHOTS (docs/img/ for the README's instructor guide) when it is set.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tito import course, demo, gradebook, sandbox
from tito.errors import TitoError
from tito.project import find_root, read_notebook, resolve

ROOT = find_root(__file__)
CHROMIUM = Path("/usr/bin/chromium")
# The README's screenshots: refreshed with TINYTORCH_SCREENSHOTS=docs/img; otherwise a run leaves the tree alone.
SHOTS = Path(os.environ.get("TINYTORCH_SCREENSHOTS") or Path(tempfile.gettempdir()) / "tinytorch-webui-shots")
KINDS = {"honest": "100 / 100", "blank": "0 / 100", "cheat": "0 / 100"}


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))

# Without the background-networking flags Chromium keeps dialing out of this closed network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.slow


def _need(condition, reason):
    """Skip without a browser or sandbox, except in CI, where the set-up installs them: there it fails."""
    if not condition:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(reason)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(address):
    try:
        urllib.request.urlopen(address, timeout=2)
        return True
    except OSError:
        return False


def hidden_lines(notebook):
    """Every non-blank line between nbgrader's BEGIN/END HIDDEN TESTS markers."""
    found = []
    for cell in notebook["cells"]:
        inside = False
        for line in "".join(cell["source"]).splitlines():
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                inside = "BEGIN" in line
            elif inside and line.strip():
                found.append(line.strip())
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a scratch course with module 01 released and three submissions; yields (url, token, course)."""
    _need(CHROMIUM.exists(), f"no {CHROMIUM}: apt-get install chromium (scripts/setup.sh does, as root)")
    try:
        sandbox.require()
    except TitoError as missing:
        _need(False, str(missing))
    enabled = Path(sys.prefix, "etc", "jupyter", "jupyter_server_config.d", "tito.json")
    assert enabled.is_file(), f"{enabled} missing: run scripts/setup.sh (it enables tito's web-UI extension)"
    scratch = demo.scratch_course(ROOT)
    with open(scratch / "nbgrader_config.py", "a") as config:  # the venv's plain kernel sees the answer key:
        config.write('\nc.Execute.kernel_name = "python3"\n')  # tito's worker must not take it from here
    (module,) = resolve(scratch, ["01"])
    course.release(scratch, [module])
    source_nb = read_notebook(module.notebook)
    release_nb = read_notebook(scratch / "course" / "release" / module.slug / f"{module.slug}.ipynb")
    for kind in KINDS:
        demo.submit(scratch, module, kind, demo.submission(kind, source_nb, release_nb))
    roster = scratch / "roster.csv"
    roster.write_text("id,first_name,last_name,email\n" + "".join(f"{k},Student,{k.title()},\n" for k in KINDS))
    subprocess.run([sys.executable, "-m", "tito", "roster", str(roster)], cwd=scratch, check=True)
    port, token = _free_port(), os.urandom(16).hex()
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "HOME": str(home), "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "TINYTORCH_SMALL": "1"}
    log = open(home / "lab.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
                               f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={scratch}",
                               *(["--allow-root"] if os.geteuid() == 0 else [])],
                              cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if _answers(f"{url}/api/status?token={token}") or server.poll() is not None:
                break
            time.sleep(0.5)
        if server.poll() is not None or not _answers(f"{url}/api/status?token={token}"):
            pytest.fail(f"JupyterLab did not start: {(home / 'lab.log').read_text()[-2000:]}")
        yield url, token, scratch, module
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "no playwright: pip install -e '.[dev]' (scripts/setup.sh does)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.route(re.compile(r"^(?!http://127\.0\.0\.1[:/])"), lambda route: route.abort())  # offline
        page.set_default_timeout(60_000)
        yield page
        chromium.close()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _row(page, student):
    return page.locator("tr", has=page.locator("td.student-id", has_text=re.compile(rf"^\s*{student}\s*$")))


def test_formgrader_autograde_and_feedback_go_through_tito(lab, browser):
    url, token, scratch, module = lab
    page = browser
    page.goto(f"{url}/lab?token={token}")  # logs in: the token becomes a cookie for the pages below
    page.goto(f"{url}/formgrader/manage_submissions/{module.slug}")
    for student, score in KINDS.items():
        _row(page, student).locator("td.autograde a").click()
        if student == "honest":  # grading runs in a child process: the server answers meanwhile
            started = time.monotonic()
            assert _answers(f"{url}/api/status?token={token}"), "the server did not answer while grading"
            assert time.monotonic() - started < 2, f"/api/status took {time.monotonic() - started:.1f} s while grading"
        modal = page.locator(".modal.in .modal-dialog", has_text="autograd")  # .in: faded in (Bootstrap 3)
        modal.wait_for(timeout=600_000)
        page.wait_for_timeout(500)  # the fade's last frames, for the screenshot
        assert "Successfully autograded" in modal.inner_text(), modal.inner_text()
        assert "$ tito autograde" in modal.inner_text(), "the click did not run tito"
        if student == "honest":
            shot(page, "formgrader-autograde.png")
        modal.locator("button", has_text="OK").click()
        modal.wait_for(state="detached")
        expect(_row(page, student).locator("td.score")).to_have_text(score)
        expect(_row(page, student).locator("td.student-name")).to_have_text(f"{student.title()}, Student")
    shot(page, "formgrader-scores.png")
    stored = {s.student: s.score for s in gradebook.scores(scratch)}
    results = {k: sum(c["score"] for c in json.loads((scratch / "course" / "results" / module.slug / f"{k}.json")
                                                     .read_text())["cells"]) for k in KINDS}
    assert stored == results == {"honest": 100, "blank": 0, "cheat": 0}, (stored, results)

    _row(page, "honest").locator("td.generate-feedback a").click()
    modal = page.locator(".modal-dialog", has_text="feedback")
    modal.wait_for()
    assert "Successfully generated feedback" in modal.inner_text(), modal.inner_text()
    received = scratch / "course" / "feedback" / "honest" / module.slug
    files = sorted(received.iterdir())
    assert [f.suffix for f in files] == [".md"], f"feedback folder holds {files}, expected tito's one Markdown file"
    text = "\n".join(f.read_text() for f in files)
    leaked = [line for line in hidden_lines(read_notebook(module.notebook)) if line in text]
    assert leaked == [], f"hidden-test lines in the student's feedback: {leaked[:3]}"


def test_manual_grading_works_offline(lab, browser):
    """Formgrader's grading page needs MathJax 2; with every request off this machine refused, it still loads."""
    url, token, scratch, module = lab
    page = browser
    listing = page.request.get(f"{url}/formgrader/api/submitted_notebooks/{module.slug}/{module.slug}").json()
    (honest,) = [n["id"] for n in listing if n["student"] == "honest"]
    page.goto(f"{url}/formgrader/submissions/{honest}/")
    page.wait_for_function("() => window.MathJax && MathJax.loaded")
    assert page.locator("input.score").count() > 0, "the grading page shows no score fields"
    shot(page, "manual-grading.png")


def test_validate_a_student_release(lab, browser):
    url, token, scratch, module = lab
    page = browser
    page.goto(f"{url}/lab/tree/course/release/{module.slug}/{module.slug}.ipynb?token={token}")
    page.get_by_role("button", name="Validate").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=300_000)
    page.wait_for_function("() => !document.querySelector('.jp-Dialog').innerText.includes('Validating')",
                           timeout=300_000)
    shot(page, "validate.png")
    assert "Validation Results" in dialog.inner_text(), dialog.inner_text()
    assert "NotImplementedYet" in dialog.inner_text(), "an untouched release should fail on its stubs"


def _api(url, token, path, method="GET"):
    request = urllib.request.Request(f"{url}/{path}", method=method, data=b"" if method == "POST" else None,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def test_exchange_releases_and_lists_the_module(lab):
    """The exchange exists (tito release made it): Formgrader's Release works and the Assignment List sees it."""
    url, token, scratch, module = lab
    released = _api(url, token, f"formgrader/api/assignment/{module.slug}/release", "POST")
    assert released["success"], released.get("error") or released
    courses = _api(url, token, "courses")
    assert courses["success"] and courses["value"] == ["tinytorch"], courses
    listed = _api(url, token, "assignments?course_id=tinytorch")
    assert listed["success"], listed
    assert [a["assignment_id"] for a in listed["value"] if a["status"] == "released"] == [module.slug], listed


def test_source_notebook_saved_from_jupyter_stays_clean(lab):
    """JupyterLab's saves add metadata and execution counts; the extension cleans modules/ notebooks as they save."""
    url, token, scratch, module = lab
    address = f"{url}/api/contents/modules/{module.slug}/{module.slug}.ipynb"
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    before = module.notebook.read_bytes()
    with urllib.request.urlopen(urllib.request.Request(address, headers=headers)) as answer:
        model = json.load(answer)
    model["content"]["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
    code = next(c for c in model["content"]["cells"] if c["cell_type"] == "code")
    code["execution_count"], code["metadata"]["scrolled"] = 7, True
    body = json.dumps({"type": "notebook", "format": "json", "content": model["content"]}).encode()
    urllib.request.urlopen(urllib.request.Request(address, data=body, headers=headers, method="PUT")).close()
    assert module.notebook.read_bytes() == before, "a save from Jupyter left the source notebook unclean"
