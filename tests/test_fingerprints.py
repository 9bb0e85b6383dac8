"""Refactorings keep the numerics: each configuration's seeded parameters match the recorded fingerprint."""

import json

import numpy as np
import pytest
from fingerprints import CONFIGS, ENVS, FINGERPRINT_FILE, fingerprint

RECORDED = json.loads(FINGERPRINT_FILE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fingerprint_unchanged(name: str, env_id: str) -> None:
    np.testing.assert_allclose(fingerprint(name, env_id), RECORDED[f"{name}/{env_id}"], rtol=1e-5, atol=1e-6)
