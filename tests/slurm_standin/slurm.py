#!/usr/bin/env python3
"""A one-machine stand-in for the SLURM commands the Snakemake SLURM plugin calls (sbatch, sacct,
squeue, scancel, srun, sinfo), so tests run the plugin itself. Each command is a link to this file;
the name it is called by picks the command. State lives in $STANDIN_SLURM_STATE:

  sbatch.jsonl, srun.jsonl  one line per call: its argument list (and sbatch's job script)
  jobs/<id>.json            one record per job (or array task): name, state, pid, start, end

sbatch starts each job in the background and prints its id as `--parsable` does; the job runs
`sh -c <--wrap>` (or the script sbatch read from stdin) in -D, with SLURM_JOB_ID, SLURM_GPUS for
--gpus and, in an array, the SLURM_ARRAY_* variables set. Its record goes PENDING -> RUNNING ->
COMPLETED or FAILED (CANCELLED by scancel). With STANDIN_SLURM_OOM=<rule>, the first job of that
rule ends OUT_OF_MEMORY without running, as if SLURM had killed it, so that a test sees a retry.
sacct prints `JobIdRaw|State` as real SLURM does (an array task's raw id is its own job id, not
`<array id>_<task>`, which is what squeue's %i prints); srun records its options and runs its
command in place. A status query (sacct or squeue --name) answers once a job has ended since the
last one: the plugin waits 10 s longer after each poll that finds nothing ended, which would
otherwise add most of a minute to each stand-in job of seconds.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ["STANDIN_SLURM_STATE"])
JOBS = STATE / "jobs"
ACTIVE = ("PENDING", "RUNNING")
# Options whose value is the next argument (the plugin writes the rest as --option=value).
VALUE_OPTIONS = {"--job-name", "--output", "--comment", "-A", "-p", "-t", "-C", "--mem", "--mem-per-cpu", "-D",
                 "--clusters", "--name", "--starttime", "--endtime", "-j", "-o"}


def append_line(name, record):
    with open(STATE / name, "a") as out:
        fcntl.flock(out, fcntl.LOCK_EX)
        out.write(json.dumps(record) + "\n")


def new_ids(count):
    """`count` consecutive job ids, unique across concurrent sbatch calls."""
    with open(STATE / "next_id", "a+") as counter:
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.seek(0)
        first = int(counter.read() or 1000)
        counter.seek(0)
        counter.truncate()
        counter.write(str(first + count))
    return list(range(first, first + count))


def read_job(raw_id):
    return json.loads((JOBS / f"{raw_id}.json").read_text())


def write_job(record):
    path = JOBS / f"{record['raw']}.json"
    path.with_suffix(".tmp").write_text(json.dumps(record))
    os.replace(path.with_suffix(".tmp"), path)  # sacct never reads half a record


def all_jobs():
    return [read_job(path.stem) for path in sorted(JOBS.glob("*.json"))]


def parse_options(argv):
    options, positional = {}, []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            options[key] = value
        elif arg in VALUE_OPTIONS:
            options[arg] = next(args)
        elif arg.startswith("-"):
            options[arg] = True
        else:
            positional.append(arg)
    return options, positional


def killed_as_out_of_memory(comment):
    """True for the first job of the rule STANDIN_SLURM_OOM names (the plugin's comment is
    rule_<rule> or rule_<rule>_wildcards_<values>)."""
    rule = os.environ.get("STANDIN_SLURM_OOM")
    marker = STATE / "oom-done"
    if not rule or not (comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_")):
        return False
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def sbatch(argv):
    options, _ = parse_options(argv)
    script = options.get("--wrap") or sys.stdin.read()
    JOBS.mkdir(exist_ok=True)
    tasks = [None]
    if "--array" in options:
        first, last = map(int, options["--array"].split("-"))
        tasks = list(range(first, last + 1))
    raw_ids = new_ids(len(tasks))
    array_id = raw_ids[0]
    append_line("sbatch.jsonl", {"argv": argv, "script": script, "jobid": array_id})
    if killed_as_out_of_memory(options.get("--comment", "")):
        write_job({"raw": array_id, "array": None, "name": options.get("--job-name"), "state": "OUT_OF_MEMORY",
                   "pid": None, "script": script})
        print(array_id)
        return
    for raw_id, task in zip(raw_ids, tasks):
        env = dict(os.environ, SLURM_JOB_ID=str(raw_id), SLURM_JOBID=str(raw_id),
                   SLURM_JOB_NAME=options.get("--job-name", ""))
        if "--gpus" in options:
            env["SLURM_GPUS"] = options["--gpus"]
        log = options.get("--output", "slurm-%j.out").replace("%j", str(raw_id))
        if task is not None:
            env.update(SLURM_ARRAY_JOB_ID=str(array_id), SLURM_ARRAY_TASK_ID=str(task),
                       SLURM_ARRAY_TASK_MIN=str(tasks[0]), SLURM_ARRAY_TASK_MAX=str(tasks[-1]))
            log = log.replace("%A", str(array_id)).replace("%a", str(task))
        write_job({"raw": raw_id, "array": f"{array_id}_{task}" if task is not None else None,
                   "name": options.get("--job-name"), "state": "PENDING", "pid": None, "script": script})
        with open(log, "a") as out:
            subprocess.Popen([sys.executable, __file__, "_run", str(raw_id)], stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, cwd=options.get("-D"), env=env,
                             start_new_session=True)  # outlives sbatch, like a queued job
    print(array_id)


def run(raw_id):
    """The job itself, in the background: its shell script, then its final state."""
    record = read_job(raw_id)
    if record["state"] == "CANCELLED":  # by scancel while still pending
        return
    write_job(dict(record, state="RUNNING", pid=os.getpid(), start=time.time()))
    code = subprocess.run(["sh", "-c", record["script"]]).returncode
    if read_job(raw_id)["state"] != "CANCELLED":
        write_job(dict(read_job(raw_id), state="COMPLETED" if code == 0 else "FAILED", end=time.time()))


def wait_for_an_end(name, timeout_s=30.0):
    """Return once a job of run `name` has ended that no status query has shown ended yet, or none
    is left queued or running (at most timeout_s)."""
    shown = STATE / f"ended-{name}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = [record for record in all_jobs() if record["name"] == name]
        ended = {str(record["raw"]) for record in jobs if record["state"] not in ACTIVE}
        if ended - set(shown.read_text().split() if shown.exists() else ()) or len(ended) == len(jobs):
            shown.write_text(" ".join(ended))
            return
        time.sleep(0.2)


def listing(argv, key):
    """The status query: `<id>|<state>` for each job of the run named by --name."""
    name = parse_options(argv)[0]["--name"]
    wait_for_an_end(name)
    for record in all_jobs():
        if record["name"] == name:
            print(f"{key(record)}|{record['state']}")


def scancel(argv):
    for job_id in argv:
        for record in all_jobs():
            if job_id in (str(record["raw"]), record["array"]) and record["state"] in ACTIVE:
                write_job(dict(record, state="CANCELLED"))
                if record["pid"]:
                    os.killpg(record["pid"], signal.SIGTERM)  # the job's session: its shell and all below


def srun(argv):
    """Records the step's options, then runs its command in place (the allocation is this machine)."""
    append_line("srun.jsonl", {"argv": argv, "job": os.environ.get("SLURM_JOB_ID")})
    start = next(i for i, arg in enumerate(argv) if not arg.startswith("-"))  # options are --opt=value
    os.execvp(argv[start], argv[start:])


def main():
    command, argv = Path(sys.argv[0]).name, sys.argv[1:]
    if argv[:1] == ["_run"]:
        run(argv[1])
    elif command == "sbatch":
        sbatch(argv)
    elif command == "sacct":
        # Only the status query names the run; the account guess and failure reasons find nothing.
        if "--name" in argv:
            listing(argv, lambda record: record["raw"])
    elif command == "squeue":
        listing(argv, lambda record: record["array"] or record["raw"])
    elif command == "scancel":
        scancel([arg for arg in argv if not arg.startswith("-")])
    elif command == "srun":
        srun(argv)
    elif command == "sinfo":
        print("PARTITION\ncpu*\ngpu")
    else:
        sys.exit(f"slurm stand-in: unknown command {command}")


if __name__ == "__main__":
    main()
