"""tools/timed.py: the wall time and peak RSS line that make test / test-slow / notebooks print."""
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "timed.py"


def test_wall_text_whole_minutes_then_seconds(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOL.parent))
    from timed import wall_text

    assert wall_text(236.46) == "3 min 56.5 s"  # not "4 min": minutes are whole, not rounded
    assert wall_text(125.0) == "2 min 05.0 s"
    assert wall_text(5) == "0 min 05.0 s"


def test_the_exit_status_is_passed_on_and_the_line_printed():
    out = subprocess.run([sys.executable, str(TOOL), "job", "--", sys.executable, "-c", "raise SystemExit(3)"],
                         capture_output=True, text=True)
    assert out.returncode == 3 and out.stdout.startswith("job: 0 min ") and "exit status 3" in out.stdout
    assert subprocess.run([sys.executable, str(TOOL), "no command"], capture_output=True).returncode == 2
