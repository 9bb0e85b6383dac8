"""The results file: one JSON record per finished run, appended as runs finish."""

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS_FILE = "runs.jsonl"
RunKey = tuple[str, str, int, int]


def run_key(record: dict[str, Any]) -> RunKey:
    """
    :param record: A run record (or a run description with the same fields).
    :return: ``(algo, env, seed, timesteps)``, the identity used to skip finished runs.
    """
    return record["algo"], record["env"], int(record["seed"]), int(record["timesteps"])


def load_records(results_dir: Path) -> list[dict[str, Any]]:
    """
    :param results_dir: Folder holding the results file.
    :return: All records, in file order (empty when there is no file yet).
    """
    path = results_dir / RESULTS_FILE
    if not path.exists():
        return []
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


def append_records(results_dir: Path, records: Iterable[dict[str, Any]]) -> None:
    """
    :param results_dir: Folder holding the results file (created if missing).
    :param records: Records to append, one JSON line each.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    with open(results_dir / RESULTS_FILE, "a") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")
