"""Schemathesis against a real master over HTTPS, with the document the master serves.

The attacker model of the security review: an ordinary write token. Every generated
request, valid or not, must get an answer the document allows and never a 500; every 400
names the field it is about. The cluster lock is held by the test for the whole run, so
the jobs the fuzzer manages to submit are accepted and queued but never run: this fuzzes
the API, and no generated address is ever contacted.

CI runs the short form; ``HERD_FAULTS_ALL=1`` (what ``bench/faults_report.py --all`` sets)
adds schemathesis' coverage phase and 200 examples per operation (``HERD_FUZZ_EXAMPLES``
sets the count alone).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import settings  # noqa: E402

from herd.jobs.job import CANCELED, QUEUED, WAITING  # noqa: E402
from tests.engine.api.https_master import HTTPSMaster, start_https_master  # noqa: E402
from tests.faults.record import record  # noqa: E402

FULL = os.environ.get("HERD_FAULTS_ALL") == "1"
EXAMPLES = int(os.environ.get("HERD_FUZZ_EXAMPLES", "200" if FULL else "25"))
HOLDER = "fuzz-test-holds-the-cluster"


@pytest.fixture(scope="module")
def fuzz_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("fuzz")
    https = start_https_master(base)
    https.running.master.locks.acquire(HOLDER, "cluster", ["cluster"])
    token = https.running.api.create_token("fuzzer")
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the cluster CA
    session.verify = str(https.ca_file)
    session.headers["Authorization"] = f"Bearer {token}"
    yield {"https": https, "session": session}
    session.close()
    statuses = {j["status"] for j in https.running.api.jobs()}
    https.running.stop()
    assert statuses <= {QUEUED, WAITING, CANCELED}, "a fuzzed job ran"


@pytest.fixture(scope="module")
def api_schema(fuzz_master: dict[str, Any]) -> Any:
    https: HTTPSMaster = fuzz_master["https"]
    doc = fuzz_master["session"].get(https.url + "/v1/openapi.json", timeout=30)
    doc.raise_for_status()
    # The coverage phase enumerates every boundary of every op's every field (thousands of
    # requests for the job schema alone): the long form only.
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"phases": {"coverage": {"enabled": FULL}}}
    )
    return schemathesis.openapi.from_dict(doc.json(), config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES)
def test_api_answers_every_request_cleanly(case: Any, fuzz_master: dict[str, Any]) -> None:
    https: HTTPSMaster = fuzz_master["https"]
    session = fuzz_master["session"]
    if isinstance(case.query, dict) and case.path.endswith("/wait"):
        # A long poll may legitimately wait its whole timeout; keep the run short.
        case.query["timeout"] = "0.1"
    response = case.call(base_url=https.url, session=session, verify=session.verify, timeout=60)
    clean = response.status_code in (200, 401, 403, 404, 409, 429) or (
        response.status_code == 400 and bool(response.json()["error"]["details"].get("field"))
    )
    record(f"{case.method} {case.path}", clean, kind="input", status=response.status_code)
    assert response.status_code != 500, response.text
    assert response.status_code in (200, 400, 401, 403, 404, 409, 429), response.text
    body = response.json()
    if response.status_code == 400:
        details = body["error"]["details"]
        assert details.get("field"), f"a 400 that names no field: {body}"
        assert "allowed" in details, f"a 400 that says nothing of what is allowed: {body}"
