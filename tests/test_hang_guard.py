"""The hang guards of tests/hang_guard.py: a deadline that has passed, or a timeout raised in a test, fails
the test with a message that names it a hang guard."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

import hang_guard

TESTS = Path(__file__).resolve().parent


def test_a_passed_deadline_fails_as_a_hang():
    with pytest.raises(pytest.fail.Exception, match=r"^hang guard: the lock not within -1 s \(a deadline "
                                                    r"against a hang, not a bound on speed\)\nlog tail$"):
        hang_guard.Deadline(-1, "the lock").check(lambda: "log tail")
    hang_guard.Deadline(60, "the lock").check(lambda: 1 / 0)       # not passed: the detail is not evaluated


@pytest.mark.integration
def test_a_timeout_in_a_test_or_fixture_is_named_a_hang_guard(tmp_path):
    (tmp_path / "test_hung.py").write_text(textwrap.dedent("""
        import subprocess, sys
        import pytest

        @pytest.fixture
        def hung_fixture():
            subprocess.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.2)

        def test_hung_subprocess():
            subprocess.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.2)

        def test_hung_fixture(hung_fixture):
            pass

        def test_other_errors_pass_through():
            raise ValueError("not a hang")
    """))
    report = tmp_path / "report.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={report}", str(tmp_path / "test_hung.py")], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    cases = {c.get("name"): [(e.tag, e.get("message", "")) for e in c]
             for c in ElementTree.parse(report).iter("testcase")}
    (kind, msg), = cases["test_hung_subprocess"]
    assert kind == "failure" and msg.startswith("Failed: hang guard: TimeoutExpired: Command"), msg
    (kind, msg), = cases["test_hung_fixture"]
    assert kind == "error" and "hang guard: TimeoutExpired: Command" in msg, msg
    (kind, msg), = cases["test_other_errors_pass_through"]
    assert kind == "failure" and msg == "ValueError: not a hang", msg
