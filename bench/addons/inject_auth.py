"""mitmproxy addon: add the same Authorization header gitgate injects, on github.com only.

Loaded by bench/bench.py as `mitmdump -s bench/addons/inject_auth.py`; the header value
comes from the BENCH_AUTH environment variable ("Basic base64(x-access-token:TOKEN)").
"""

import os

from mitmproxy import http

AUTH = os.environ["BENCH_AUTH"]


class InjectAuth:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.pretty_host == "github.com":
            flow.request.headers.pop("Proxy-Authorization", None)
            flow.request.headers["Authorization"] = AUTH


addons = [InjectAuth()]
