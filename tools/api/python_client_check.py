"""Drive facegate through the client openapi-python-client generated from /openapi.json.

Usage: python_client_check.py CLIENT_DIR BASE_URL API_KEY PROBE REFERENCE
Uses only the generated package (httpx only for the timeout it takes). Exits non-zero on failure.
"""

import base64
import sys
from pathlib import Path

import httpx

client_dir, base_url, key, probe, reference = sys.argv[1:6]
sys.path.insert(0, client_dir)  # generated with --meta none: importable from its parent dir

from facegate_client import AuthenticatedClient  # noqa: E402
from facegate_client.api.default import info, verify  # noqa: E402
from facegate_client.models import Info, VerifyFilesBody, VerifyRequest, VerifyResponse  # noqa: E402
from facegate_client.types import File  # noqa: E402

# Bearer is the client's default auth (Authorization: Bearer KEY); a debug build on CPU
# can take longer than httpx's 5 s default, hence the timeout.
client = AuthenticatedClient(base_url=base_url, token=key, timeout=httpx.Timeout(120.0),
                             raise_on_unexpected_status=True)


def check(label, response):
    v = response.parsed
    # VerifyResponse: the verification plus the request id the service issued.
    ok = (response.status_code == 200 and isinstance(v, VerifyResponse) and bool(v.request_id)
          and v.decision.value in ("match", "no_match", "rejected")
          and isinstance(v.score, (int, float)))
    print(f"{label}: HTTP {int(response.status_code)} decision={getattr(v, 'decision', None) and v.decision.value}"
          f" score={getattr(v, 'score', None)}")
    if not ok:
        sys.exit(f"{label}: unexpected response: {response.content[:500]!r}")
    return v


with client:
    r = info.sync_detailed(client=client)
    if r.status_code != 200 or not isinstance(r.parsed, Info):
        sys.exit(f"GET /info: {r.status_code} {r.content[:300]!r}")
    print(f"info: model={r.parsed.model} threshold={r.parsed.threshold}")

    # One operation, two request body content types: the generated `body` is a union and
    # the model's class picks multipart (VerifyFilesBody) or JSON (VerifyRequest).
    with open(probe, "rb") as p, open(reference, "rb") as q:
        body = VerifyFilesBody(probe=File(payload=p, file_name=Path(probe).name, mime_type="image/png"),
                               reference=File(payload=q, file_name=Path(reference).name, mime_type="image/png"))
        a = check("multipart", verify.sync_detailed(client=client, body=body))

    b64 = lambda f: base64.b64encode(Path(f).read_bytes()).decode("ascii")  # noqa: E731
    body = VerifyRequest(probe=b64(probe), reference=b64(reference))
    b = check("json", verify.sync_detailed(client=client, body=body))

    # Same bytes either way: the two encodings must reach the same decision.
    if a.decision != b.decision or abs(a.score - b.score) > 1e-4:
        sys.exit(f"multipart and JSON disagree: {a.decision.value} {a.score} vs {b.decision.value} {b.score}")
