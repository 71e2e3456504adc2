"""Formgrader's Autograde and Generate Feedback buttons, run by tito (a Jupyter server extension).

nbgrader's own handlers grade inside the Jupyter server with a plain kernel (no sandbox, no caps, the
answer key readable) and render feedback holding the hidden tests. This extension puts its handlers in
front of those routes: each click runs `tito autograde NN --student S` or `tito feedback NN` as a child
process, awaited without blocking the server, so a submission graded from the web UI gets exactly the
score, feedback and protections `tito` gives it, and the gradebook, course/results and course/feedback
agree. It also cleans source notebooks as JupyterLab saves them (nbdev's pre-save hook), so an instructor
editing modules/ in the browser leaves them as `tito build --check` expects. Enabled in the venv's Jupyter
by scripts/setup.sh (tito/jupyter_server_config.json); start JupyterLab in the course folder.
"""
import asyncio
import json
import sys
from pathlib import Path

from jinja2 import DictLoader
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop
from tornado.routing import HostMatches, Rule
from tornado.web import _ApplicationRouter

ROUTES = {  # nbgrader's formgrader API route (after the base URL) -> the tito command it becomes ("--" and
    # "--student=": a name from the URL is never read as an option)
    r"formgrader/api/submission/([^/]+)/([^/]+)/autograde":
        lambda module, student: ["autograde", f"--student={student}", "--", module],
    r"formgrader/api/assignment/([^/]+)/generate_feedback": lambda module: ["feedback", "--", module],
    r"formgrader/api/assignment/([^/]+)/([^/]+)/generate_feedback":
        lambda module, student: ["feedback", f"--student={student}", "--", module],
}


_one_at_a_time = asyncio.Lock()  # clicks queue up: tito stays the gradebook's only writer


async def run_tito(course, arguments):
    """Run `tito ARGUMENTS` in the course folder without blocking the server; returns (status, output)."""
    async with _one_at_a_time:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "tito", *arguments, cwd=course,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
    return process.returncode, output.decode(errors="replace")


class TitoHandler(JupyterHandler):
    """POST: run the tito command of this route; answers in the shape formgrader's page expects."""

    def initialize(self, command, course):
        self.command, self.course = command, course

    @web.authenticated
    async def post(self, *groups):
        arguments = self.command(*groups)
        status, output = await run_tito(self.course, arguments)
        self.log.info("tito %s: exit %s", " ".join(arguments), status)
        header = f"$ tito {' '.join(arguments)}\n"
        reply = {"success": status == 0, "log": header + output}
        if status != 0:
            reply["error"] = header + output
        self.finish(json.dumps(reply))  # as text, like nbgrader's handlers: the page JSON.parses it


def clean_before_save(model, path, contents_manager, **kwargs):
    """nbdev_clean a source notebook (modules/) as Jupyter saves it (settings.ini's jupyter_hooks turns this on)."""
    from nbdev.clean import clean_jupyter

    if model.get("type") == "notebook" and path.lstrip("/").startswith("modules/"):
        clean_jupyter(path=contents_manager._get_os_path(path), model=model)


MATHJAX_MACRO = """{%- macro mathjax(url=None) -%}
{%- from "nbconvert/templates/base/mathjax.html.j2" import mathjax as stock -%}
{{ stock(url or "URL") }}
{%- endmacro %}
"""


def serve_mathjax_locally(server):
    """Formgrader renders notebooks with nbconvert's MathJax macro, whose default is a CDN; offline its page
    stops at `MathJax is not defined`. Formgrader's exporter finds, before nbconvert's templates, a macro
    loading the MathJax 2 this Jupyter serves itself (jupyter-server-mathjax)."""
    exporter = server.web_app.settings.get("nbgrader_exporter")
    if exporter is None:
        return
    url = url_path_join(server.web_app.settings["base_url"], "static/jupyter_server_mathjax/MathJax.js")
    macro = MATHJAX_MACRO.replace("URL", url + "?config=TeX-AMS-MML_HTMLorMML-full,Safe")
    exporter.extra_loaders = [DictLoader({"mathjax.html.j2": macro}), *exporter.extra_loaders]


def _load_jupyter_server_extension(server):
    """Put tito's handlers before every other route, so they win over nbgrader's whatever the load order."""
    app = server.web_app
    course = Path(server.root_dir).resolve()
    base = app.settings["base_url"]
    handlers = [(url_path_join(base, pattern), TitoHandler, {"command": command, "course": course})
                for pattern, command in ROUTES.items()]
    app.default_router.rules.insert(0, Rule(HostMatches(r".*$"), _ApplicationRouter(app, handlers)))
    server.contents_manager.register_pre_save_hook(clean_before_save)
    IOLoop.current().add_callback(serve_mathjax_locally, server)  # once every extension (nbgrader's too) is loaded
    server.log.info("tito: formgrader's Autograde and Generate Feedback run tito in %s", course)


def _jupyter_server_extension_points():
    return [{"module": "tito.webui"}]
