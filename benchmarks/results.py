"""The results file: one JSON record per finished run, appended as runs finish."""

import json
import multiprocessing
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

RESULTS_FILE = "runs.jsonl"
RunKey = tuple[str, str, int, int]
Record = dict[str, Any]


def run_key(record: dict[str, Any]) -> RunKey:
    """
    :param record: A run record (or a run description with the same fields).
    :return: ``(algo, env, seed, timesteps)``, the identity used to skip finished runs.
    """
    return record["algo"], record["env"], int(record["seed"]), int(record["timesteps"])


def load_records(results_dir: Path) -> list[dict[str, Any]]:
    """
    :param results_dir: Folder holding the results file.
    :return: All records, in file order (empty when there is no file yet). A last line cut short, as a run killed
        while writing leaves it, is skipped with a warning; a damaged line elsewhere is an error naming it.
    """
    path = results_dir / RESULTS_FILE
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                warnings.warn(f"{path}: line {number} is cut short ({error}); it is skipped", stacklevel=2)
                continue
            raise ValueError(f"{path}: line {number} is not a JSON record ({error})") from error
    return records


def append_records(results_dir: Path, records: Iterable[dict[str, Any]]) -> None:
    """
    :param results_dir: Folder holding the results file (created if missing).
    :param records: Records to append, one JSON line each.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / RESULTS_FILE
    content = path.read_bytes() if path.exists() else b""
    if content and not content.endswith(b"\n"):
        # A record cut short by a killed run cannot be completed: drop it rather than extend it.
        warnings.warn(f"{path}: dropping its last line, cut short", stacklevel=2)
        with open(path, "r+b") as file:
            file.truncate(content.rfind(b"\n") + 1)
    with open(path, "a", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")


def run_in_pool(
    run_one: Callable[[Record], Record],
    tasks: list[Record],
    jobs: int,
    results_dir: Path,
    describe: Callable[[Record], str],
) -> int:
    """
    Run tasks in ``jobs`` spawned worker processes, appending each record to the results file as its run finishes.

    :param run_one: Runs one task and returns its record (importable, so that the workers can call it).
    :param tasks: The runs to make.
    :param jobs: Worker processes.
    :param results_dir: Folder holding the results file.
    :param describe: A one-line progress summary of a record.
    :return: How many runs failed; each failure's traceback is printed and the other runs go on.
    """
    failures = 0
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures: dict[Future, Record] = {pool.submit(run_one, task): task for task in tasks}
        for future in as_completed(futures):
            try:
                record = future.result()
            except Exception:
                failures += 1
                print(f"FAILED {futures[future]}\n{traceback.format_exc()}", file=sys.stderr)
                continue
            append_records(results_dir, [record])
            print(describe(record), flush=True)
    return failures
