"""The local command line: what it prints, and where library chatter goes."""

import subprocess
import sys

from imgfeat import paths


def test_chatter_of_child_processes_goes_to_the_log_not_the_terminal(tmp_path):
    """A JVM (here: `java -version`, which writes to stderr) started inside `chatter_to` writes to the
    log; what the command prints after it reaches the terminal."""
    log = tmp_path / "logs" / "setup.log"
    code = (f"import subprocess; from pathlib import Path; from imgfeat.cli import chatter_to\n"
            f"with chatter_to(Path({str(log)!r})):\n"
            f"    print('creating: createReLU')\n"
            f"    subprocess.run(['java', '-version'])\n"
            f"print('models: ready')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.REPO)
    assert out.returncode == 0, out.stderr
    assert (out.stdout, out.stderr) == ("models: ready\n", "")
    text = log.read_text()
    assert "creating: createReLU" in text and "version" in text
