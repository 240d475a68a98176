"""The README renders, and opens with the two commands a newcomer needs."""

import io
import os

import docutils.core
import testtools

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.rst")


class TestReadme(testtools.TestCase):

    def setUp(self):
        super().setUp()
        with open(README) as f:
            self.text = f.read()

    def test_renders_without_warnings(self):
        warnings = io.StringIO()
        docutils.core.publish_string(
            self.text, writer_name="null",
            settings_overrides={"warning_stream": warnings, "report_level": 2})
        self.assertEqual("", warnings.getvalue())

    def test_opens_with_the_main_job_then_the_tests(self):
        commands = [line.strip() for line in self.text.splitlines()
                    if line.startswith("    ") and line.strip()][:2]
        self.assertEqual(["python3 -m pip install tox && tox -e demo",
                          "python3 -m pip install tox && tox"], commands)
