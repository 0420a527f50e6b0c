"""What the README promises of the command line, tried as a new user tries it (session 49).

- "a reader that stops early (``| head``, ``| grep -q``) changes none": ``entropy-watch --help | grep -q alerts``
  exited 1 in most runs under ``set -o pipefail``. Rich's console wrote the help, grep read its match and left, and
  click's echo of the last line break then met the closed pipe: click's broken-pipe handler exited 1 without pointing
  stdout at /dev/null, which is all the boundary looked for.
- ``import --help`` named the file the options are kept in as ``run.json``; the store writes ``_run.json``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from ..cli_run import Ran

# A child process whose stdout is read as `grep -q WORD` reads it: what is written is taken until WORD has been seen,
# then the reader is gone and every later write fails with EPIPE -- unless stdout now points at /dev/null (rich's own
# broken-pipe handler does that), where writes vanish as they do on a real pipe's /dev/null. Each write goes straight
# to the reader (write_through), so where the pipe breaks depends on the writes, not on timing.
GREP_Q_CHILD = textwrap.dedent(
    """
    import errno, io, os, sys, tempfile

    WORD = sys.argv[1].encode()


    class GrepQ(io.RawIOBase):
        def __init__(self):
            self.fd = os.open(os.path.join(tempfile.mkdtemp(), "out"), os.O_CREAT | os.O_WRONLY)
            self.seen, self.gone = b"", False

        def writable(self):
            return True

        def fileno(self):
            return self.fd

        def write(self, b):
            if os.path.samestat(os.fstat(self.fd), os.stat(os.devnull)):
                return len(b)
            if self.gone:
                raise BrokenPipeError(errno.EPIPE, "Broken pipe")
            self.seen += bytes(b)
            self.gone = WORD in self.seen
            return len(b)


    sys.stdout = io.TextIOWrapper(GrepQ(), encoding="utf-8", write_through=True)
    from entropy_watch.cli import main

    codes = []
    for argv in [a.split("\\x1f") for a in sys.argv[2:]]:
        try:
            main(argv)
            codes.append(0)
        except SystemExit as e:
            codes.append(e.code if isinstance(e.code, int) else 1)
    sys.stderr.write(f"codes {codes}\\n")
    """
)


def _grep_q(word: str, *invocations: list[str]) -> tuple[list[int], str]:
    """Run each invocation in one child process whose stdout a `grep -q word` reads; their exit codes and stderr."""
    r = subprocess.run(
        [sys.executable, "-c", GREP_Q_CHILD, word, *("\x1f".join(argv) for argv in invocations)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert r.returncode == 0 and last.startswith("codes "), (r.returncode, r.stderr)
    codes = [int(c) for c in last.removeprefix("codes [").removesuffix("]").split(",")]
    return codes, r.stderr.removesuffix(last + "\n")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_help_whose_reader_leaves_at_its_match_exits_0() -> None:
    """``entropy-watch --help | grep -q alerts`` (the README's "a reader that stops early changes none"): the
    commands panel holds the match, the help's last write finds the pipe closed."""
    codes, err = _grep_q("alerts", ["--help"])
    assert codes == [0] and err == "", (codes, err)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_after_help_lost_its_reader_an_error_still_exits_1(tmp_path) -> None:
    """The pipe broke once in this process (click then leaves its stdout wrapper in place): a later invocation's
    one-line error is still exit 1, not taken for another reader going away."""
    codes, err = _grep_q("alerts", ["--help"], ["--store", str(tmp_path), "show", "nosuch"])
    assert codes == [0, 1] and err.count("error:") == 1, (codes, err)


def test_import_help_names_the_file_the_store_writes(ew: Callable[..., Ran]) -> None:
    """``--vocab-size`` and ``--reward-max`` are kept in the run's ``_run.json`` (the README, the store layout); the
    help said ``run.json``, a file no run folder holds."""
    r = ew("import", "--help")
    flat = " ".join(r.out.replace("│", " ").split())
    assert r.code == 0 and flat.count("Kept in the run's _run.json.") == 2, flat


@pytest.mark.parametrize("command", ["compact", "rm"])
def test_help_prose_wraps_to_the_width_not_the_source_lines(ew: Callable[..., Ran], command: str) -> None:
    """``rm --help`` broke "without one, pass" from "--yes (else exit 2)" (and ``compact --help`` its exit codes)
    wherever the docstring's source line ended: typer keeps the line breaks of a description's later paragraphs. Each
    paragraph now fills the width: only its last line may be short."""
    r = ew(command, "--help")
    prose = r.out.split("╭")[0].splitlines()[2:]  # past the blank line and the usage line, before the first box
    paragraphs = "\n".join(line.strip() for line in prose).strip().split("\n\n")
    assert r.code == 0 and len(paragraphs) == 2, r.out
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        short = [line for line in lines[:-1] if len(line) < 60]
        assert short == [], (command, lines)
