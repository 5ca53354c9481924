"""Run by the system Python (/usr/bin/python3), where Debian's python3-ganeti-rapi lives:
``ganeti_client.py PORT CAFILE USER PASSWORD CALLS_JSON`` makes each call ``[method,
args, kwargs]`` with Ganeti's own ``GanetiRapiClient`` and prints the results as JSON
(an error as ``{"error": [http_code, message]}``)."""

import json
import sys

from ganeti.rapi import client

port, cafile, user, password, calls = sys.argv[1:6]
rapi = client.GanetiRapiClient(
    "127.0.0.1",
    port=int(port),
    username=user,
    password=password,
    curl_config_fn=client.GenericCurlConfig(cafile=cafile, verify_hostname=True, timeout=60),
)
results = []
for method, args, kwargs in json.loads(calls):
    try:
        results.append(getattr(rapi, method)(*args, **kwargs))
    except client.GanetiApiError as err:
        results.append({"error": [err.code, str(err)]})
print(json.dumps(results))
