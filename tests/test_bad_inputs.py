"""The bad-input matrix: one broken file or setting per case, across config, corpus, model,
adapter, hooks, activations, SAE files, pretrained SAEs and steering. Each stops with a non-zero
exit and one line that names the file or key and the fix, and leaves no output behind (README
"Troubleshooting" lists them)."""

import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

from bad_inputs import artifact_cases, input_cases  # noqa: F401  (they register the cases)
from bad_inputs.registry import CASES, Attempt
from saeflow.jobs import run_job

NOBODY = 65534


def _run_in_process(attempt: Attempt, log_path) -> int:
    if attempt.unprivileged and os.geteuid() == 0:
        # nobody cannot enter pytest's private tmp dir: the job logs into a folder it may write.
        log_dir = Path(tempfile.mkdtemp(prefix="saeflow-job-log-"))
        log_dir.chmod(0o777)
        pid = os.fork()
        if pid == 0:  # the child drops root, so that file permissions bind it
            code = 1
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                code = _exit_code(attempt, log_dir / "job.log")
            except BaseException:
                traceback.print_exc()  # os._exit would hide why the child failed
            finally:
                sys.stderr.flush()
                os._exit(code)
        status = os.waitpid(pid, 0)[1]
        shutil.rmtree(log_dir, ignore_errors=True)
        return os.waitstatus_to_exitcode(status)
    return _exit_code(attempt, log_path)


def _exit_code(attempt: Attempt, log_path) -> int:
    try:
        run_job(str(log_path), attempt.job)
    except SystemExit as done:
        return 1 if done.code is None or isinstance(done.code, str) else int(done.code)
    return 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_stops_with_one_line_naming_the_fault_and_the_fix(name, tmp_path, capfd, request):
    attempt = CASES[name](tmp_path, request)
    capfd.readouterr()  # what preparing printed
    if attempt.command:
        done = subprocess.run(attempt.command, cwd=attempt.cwd, capture_output=True, text=True, timeout=300)
        code, output = done.returncode, done.stdout + done.stderr
        assert "Traceback" not in output, output[-3000:]
        lines = [line for line in output.splitlines() if all(part in line for part in attempt.expect)]
    else:
        code = _run_in_process(attempt, tmp_path / "job.log")
        output = capfd.readouterr().err
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1, output[-3000:]
        assert lines[0].startswith("saeflow error: ")
        lines = [line for line in lines if all(part in line for part in attempt.expect)]
    assert code != 0
    assert len(lines) == 1, f"expected one line with {attempt.expect} in:\n{output[-3000:]}"
    for path in attempt.outputs:
        assert not path.exists(), path
        assert not list(path.parent.glob(f".{path.name}.tmp-*")), path
