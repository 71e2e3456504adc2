"""nbgrader configuration for the TinyTorch course; run nbgrader (or tito) from this folder."""
import os

ROOT = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(ROOT, "course"), exist_ok=True)  # SQLite cannot create the gradebook's folder

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)
c.CourseDirectory.course_id = "tinytorch"
c.CourseDirectory.root = ROOT
c.CourseDirectory.source_directory = "modules"
c.CourseDirectory.release_directory = "course/release"
c.CourseDirectory.submitted_directory = "course/submitted"
c.CourseDirectory.autograded_directory = "course/autograded"
c.CourseDirectory.feedback_directory = "course/feedback"
c.CourseDirectory.solution_directory = "course/solution"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(ROOT, "course", "gradebook.db")
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]
c.Exchange.root = os.path.join(ROOT, "course", "exchange")

# A stub names the function to write and the module it belongs to (see tinytorch/_todo.py).
c.ClearSolutions.code_stub = {"python": "### YOUR CODE HERE\nfrom tinytorch._todo import todo; todo()"}
c.ClearSolutions.enforce_metadata = True

# Graded cells run on tiny inputs in seconds; training lives in milestones/. Override with --Execute.timeout=N.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
