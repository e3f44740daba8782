#!/usr/bin/env python3
"""An omni-style GENI AM v3 session with Python's standard xmlrpc.client over an ssl
context carrying a client certificate. Prints one JSON line per call.

usage: geni-client.py URL CA CERT KEY CREDENTIAL_FILE SLICE_URN RSPEC_FILE MARK_ENV
MARK_ENV (NAME=VALUE) marks the sliver's process: /proc tells whether it runs."""

import json
import os
import ssl
import sys
import time
import xmlrpc.client

url, ca, cert, key, cred_file, slice_urn, rspec_file, mark = sys.argv[1:9]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
am = xmlrpc.client.ServerProxy(url, context=ctx)
creds = [{"geni_type": "geni_sfa", "geni_version": "3", "geni_value": open(cred_file).read()}]
rspec_version = {"geni_rspec_version": {"type": "GENI", "version": "3"}}


def report(method, result, **extra):
    print(json.dumps({"method": method, "geni_code": result["code"]["geni_code"], **extra}), flush=True)
    return result


def marked():
    n = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark.encode() in f.read().split(b"\0"):
                    n += 1
        except OSError:
            pass
    return n


report("GetVersion", am.GetVersion({}))
report("Allocate", am.Allocate(slice_urn, creds, open(rspec_file).read(), {}))
report("Provision", am.Provision([slice_urn], creds, rspec_version))
report("PerformOperationalAction", am.PerformOperationalAction([slice_urn], creds, "geni_start", {}))
deadline = time.time() + 20
while True:
    status = am.Status([slice_urn], creds, {})
    state = status["value"]["geni_slivers"][0]["geni_operational_status"]
    if state == "geni_ready" or time.time() > deadline:
        break
    time.sleep(0.2)
report("Status", status, operational=state, processes=marked())
report("Delete", am.Delete([slice_urn], creds, {}))
report("Status", am.Status([slice_urn], creds, {}))
