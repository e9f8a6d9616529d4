"""TLS trust for outbound connections: one verifying SSLContext per CA file, shared.

Left to itself, urllib3 builds a context and loads the CA file for every connection; with
a thousand stamps that trust the same CA, that is a thousand copies of one trust store and
a file read per handshake. Here each trust configuration (a ``ca_file``, or the default
bundle requests uses) has one context, built by urllib3's own factory so that it verifies
exactly as urllib3 would, and shared by every session. A CA file that changes on disk gets
a new context at the next read.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

import requests
import requests.adapters
import requests.certs
from urllib3.util.ssl_ import create_urllib3_context

_contexts: dict[tuple[str, int, int], ssl.SSLContext] = {}
_lock = threading.Lock()


def trust_context(ca_file: str | None) -> ssl.SSLContext:
    """The shared context that verifies against ``ca_file`` (None: requests' default bundle).

    Raises OSError or ssl.SSLError when the file cannot be read or holds no certificate.
    """
    path = ca_file or requests.certs.where()
    info = os.stat(path)
    key = (path, info.st_mtime_ns, info.st_size)
    with _lock:
        context = _contexts.get(key)
        if context is None:
            context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
            context.load_verify_locations(cafile=path)
            for old in [k for k in _contexts if k[0] == path]:
                del _contexts[old]  # the file changed: its old context goes when its last session does
            _contexts[key] = context
        return context


class TrustAdapter(requests.adapters.HTTPAdapter):
    """An adapter whose https connections verify with one shared context, never a per-connection copy.

    requests would hand the CA file's path to every connection (urllib3 then loads it into
    the context each time); here the path is dropped and the context carries the trust.
    """

    def __init__(self, context: ssl.SSLContext | None, **kwargs: Any) -> None:
        self.context = context  # set first: HTTPAdapter.__init__ builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self.context is not None:
            kwargs["ssl_context"] = self.context
        super().init_poolmanager(*args, **kwargs)

    def use(self, context: ssl.SSLContext) -> None:
        """Verify with this context from now on (the first, or the CA file changed): pools are rebuilt."""
        if context is not self.context:
            self.context = context
            self.poolmanager.connection_pool_kw["ssl_context"] = context
            self.poolmanager.clear()

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        """requests >= 2.32.2: the pool's TLS settings, with the shared context instead of a path."""
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
        pool_kwargs["ssl_context"] = self.context
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Verification stays required; the trust comes from the context, not from a path per connection."""
        super().cert_verify(conn, url, verify, cert)
        if url.lower().startswith("https"):
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = None
            conn.ca_cert_dir = None
