"""Fixtures for tests against a real kube-apiserver and etcd (started by ``deploy/local/k8s up``).

There are no kubelets: a test registers Node objects whose InternalIP and
kubelet port point at a :class:`TestKubelet` it serves itself (HTTPS,
``/stats/summary``, client certificate required), so the API server's real
node proxy carries the collector's requests. The API server refuses to proxy
to loopback addresses, so the test kubelet listens inside the network
namespace that ``deploy/local/k8s up`` makes (its socket is opened there by a
thread that briefly enters the namespace with ``setns``).

Test modules import the fixtures they use from here, e.g.
``from tests.integration.k8s_fixtures import control_plane, kube, k8s_namespace``.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import select
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "local" / "k8s"
ACCESS_DIR = ROOT / "deploy" / "kubernetes" / "base" / "access"

K8S_TEST_TIMEOUT_S = 45 * 60
"""Per-test timeout of the real-control-plane tests: the first one may build kube-apiserver cold."""

__all__ = [
    "K8S_TEST_TIMEOUT_S",
    "ControlPlane",
    "Kube",
    "KubeError",
    "TestKubelet",
    "PausableProxy",
    "control_plane",
    "kube",
    "k8s_namespace",
    "kubelet_factory",
    "k8s_nodes",
    "register_node",
    "collector_access_objects",
    "apply",
    "service_account_kubeconfig",
    "etcd_compact",
]


# -- the control plane ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlPlane:
    """Where the running control plane is, as ``deploy/local/k8s env`` tells."""

    kubeconfig: Path
    api_url: str
    etcd_url: str
    ca: Path
    kubelet_cert: Path
    kubelet_key: Path
    kubelet_client_cn: str
    netns: str
    kubelet_ip: str


def _env_of_script() -> dict[str, str]:
    out = subprocess.run([str(K8S), "env"], check=True, capture_output=True, text=True).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export ") :].partition("=")
            env[k] = v
    return env


@pytest.fixture(scope="session")
def control_plane() -> ControlPlane:
    """etcd and kube-apiserver, built on first use and started once per session; fails (never skips)."""
    proc = subprocess.run([str(K8S), "up"], capture_output=True, text=True, timeout=K8S_TEST_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"`deploy/local/k8s up` failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}", pytrace=False)
    e = _env_of_script()
    return ControlPlane(
        kubeconfig=Path(e["KUBEPULSE_K8S_KUBECONFIG"]),
        api_url=e["KUBEPULSE_K8S_API_URL"],
        etcd_url=e["KUBEPULSE_K8S_ETCD_URL"],
        ca=Path(e["KUBEPULSE_K8S_CA"]),
        kubelet_cert=Path(e["KUBEPULSE_K8S_KUBELET_CERT"]),
        kubelet_key=Path(e["KUBEPULSE_K8S_KUBELET_KEY"]),
        kubelet_client_cn=e["KUBEPULSE_K8S_KUBELET_CLIENT_CN"],
        netns=e["KUBEPULSE_K8S_NETNS"],
        kubelet_ip=e["KUBEPULSE_K8S_KUBELET_IP"],
    )


class KubeError(AssertionError):
    """An API call answered with a status the test did not expect."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status}: {body[:800]}")
        self.status = status
        self.body = body


class Kube:
    """A plain HTTP client of the API server (client certificate or bearer token): JSON in, JSON out.

    Tests set up the cluster the way a kubelet or ``kubectl`` would; the
    collector under test uses its own client, never this one.
    """

    def __init__(self, cp: ControlPlane, *, cert: tuple[str, str] | None = None, token: str | None = None) -> None:
        self.cp = cp
        self.http = requests.Session()
        # Not the environment's: REQUESTS_CA_BUNDLE would replace our CA, and a proxy must not be used.
        self.http.trust_env = False
        self.http.verify = str(cp.ca)
        if cert:
            self.http.cert = cert
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201), **params: Any) -> Any:
        headers = {"Accept": "application/json"}
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        r = self.http.request(method, self.cp.api_url + path, json=body, params=params or None, headers=headers, timeout=30)
        if r.status_code not in ok:
            raise KubeError(method, path, r.status_code, r.text)
        return r.json() if r.content else None

    def status_of(self, method: str, path: str, body: Any = None) -> int:
        """Just the HTTP status of a call (for checks that it is denied)."""
        return self.http.request(method, self.cp.api_url + path, json=body, timeout=30).status_code

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def post(self, path: str, body: Any) -> Any:
        return self.call("POST", path, body)


def _admin_cert(cp: ControlPlane) -> tuple[str, str]:
    # The kubeconfig that `up` writes names the admin client certificate and key.
    kc = yaml.safe_load(cp.kubeconfig.read_text())
    user = kc["users"][0]["user"]
    return user["client-certificate"], user["client-key"]


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    """Cluster-admin access (group system:masters) for setting up tests."""
    k = Kube(control_plane, cert=_admin_cert(control_plane))
    yield k
    k.close()


@pytest.fixture
def k8s_namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace with its ``default`` ServiceAccount; its pods, events and quotas are deleted afterwards.

    There is no controller manager: nothing else creates the ServiceAccount
    that pod admission requires, nor empties a deleted namespace.
    """
    ns = f"kp-{uuid.uuid4().hex[:8]}"
    kube.post("/api/v1/namespaces", {"metadata": {"name": ns}})
    kube.post(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "default"}})
    yield ns
    # Pods bound to a node wait for their kubelet to confirm deletion: grace 0 skips that.
    kube.call("DELETE", f"/api/v1/namespaces/{ns}/pods", gracePeriodSeconds=0)
    kube.call("DELETE", f"/api/v1/namespaces/{ns}/events")
    # Quotas too, or every later collector pass lists them in a namespace stuck in Terminating.
    kube.call("DELETE", f"/api/v1/namespaces/{ns}/resourcequotas")
    kube.call("DELETE", f"/api/v1/namespaces/{ns}", ok=(200, 202))


# -- the test kubelet -----------------------------------------------------------------

_CLONE_NEWNET = 0x40000000


def _listen_in_netns(netns: str, ip: str) -> socket.socket:
    """A listening TCP socket on ``ip`` inside network namespace ``netns``.

    ``setns`` changes the namespace of the calling thread only, and a socket
    stays in the namespace it was made in; so a short-lived thread enters,
    opens the socket, and leaves, and the rest of the process is untouched.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    result: dict[str, Any] = {}

    def work() -> None:
        with open("/proc/thread-self/ns/net") as home, open(f"/var/run/netns/{netns}") as target:
            if libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
                result["error"] = OSError(ctypes.get_errno(), f"setns into {netns}: {os.strerror(ctypes.get_errno())}")
                return
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((ip, 0))
                sock.listen(64)
                result["sock"] = sock
            except OSError as exc:
                result["error"] = exc
            finally:
                if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                    result["error"] = OSError(ctypes.get_errno(), "setns back home failed")

    t = threading.Thread(target=work, name="kp-netns")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


@dataclass(slots=True)
class KubeletRequest:
    path: str
    client_cn: str | None


class TestKubelet:
    """An HTTPS server standing in for one node's kubelet: ``GET /stats/summary`` answers ``summary``.

    It requires a client certificate signed by the cluster CA, as a kubelet
    does, and records who asked what, so a test can tell a request really came
    through the API server's node proxy.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, cp: ControlPlane) -> None:
        self.summary: dict[str, Any] | None = None
        self.requests: list[KubeletRequest] = []
        sock = _listen_in_netns(cp.netns, cp.kubelet_ip)
        self.host, self.port = sock.getsockname()[:2]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cp.ca))
        ctx.load_cert_chain(str(cp.kubelet_cert), str(cp.kubelet_key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        kubelet = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                cert = self.connection.getpeercert() or {}
                cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), None)
                kubelet.requests.append(KubeletRequest(self.path, cn))
                if self.path.split("?")[0] != "/stats/summary" or kubelet.summary is None:
                    self._send(404, b"404 page not found\n", "text/plain")
                    return
                self._send(200, json.dumps(kubelet.summary).encode(), "application/json")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((self.host, self.port), Handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = ctx.wrap_socket(sock, server_side=True)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def kubelet_factory(control_plane: ControlPlane) -> Iterator[Any]:
    """``kubelet_factory()`` starts a :class:`TestKubelet`; all are stopped after the test."""
    made: list[TestKubelet] = []

    def make() -> TestKubelet:
        k = TestKubelet(control_plane)
        made.append(k)
        return k

    yield make
    for k in made:
        k.close()


@pytest.fixture
def k8s_nodes(kube: Kube) -> Iterator[Any]:
    """``k8s_nodes(node, kubelet)`` registers a Node (see :func:`register_node`); all are deleted after the test."""
    names: list[str] = []

    def add(node: dict[str, Any], kubelet: TestKubelet) -> dict[str, Any]:
        created = register_node(kube, node, kubelet)
        names.append(created["metadata"]["name"])
        return created

    yield add
    for n in names:
        kube.call("DELETE", f"/api/v1/nodes/{n}", ok=(200, 404))


def register_node(kube: Kube, node: dict[str, Any], kubelet: TestKubelet) -> dict[str, Any]:
    """Create a Node (a ``payloads.node`` dict) whose kubelet is ``kubelet``, as a kubelet registers itself.

    The node proxy dials ``status.addresses`` InternalIP at
    ``status.daemonEndpoints.kubeletEndpoint.Port``; both are set on create and
    again through ``/status`` (the API server keeps status on Node create, but
    a kubelet also posts it there, and this does not depend on either detail).
    """
    body = {k: v for k, v in node.items() if k != "metadata"}
    body["metadata"] = {k: v for k, v in node["metadata"].items() if k != "uid"}  # the server assigns uids
    status = dict(body.get("status") or {})
    status["addresses"] = [{"type": "InternalIP", "address": kubelet.host}, {"type": "Hostname", "address": node["metadata"]["name"]}]
    status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": kubelet.port}}
    body["status"] = status
    created = kube.post("/api/v1/nodes", body)
    name = created["metadata"]["name"]
    created["status"].update(status)
    return kube.call("PUT", f"/api/v1/nodes/{name}/status", created)


# -- applying deploy/kubernetes ------------------------------------------------------------

_PATHS = {
    ("v1", "Namespace"): "/api/v1/namespaces",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


def collector_access_objects() -> list[dict[str, Any]]:
    """The objects of ``deploy/kubernetes/base/access`` (its kustomization's resources, in order)."""
    kustomization = yaml.safe_load((ACCESS_DIR / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources"}, (
        f"{ACCESS_DIR}/kustomization.yaml now transforms its resources ({sorted(kustomization)}); render it with deploy/kustomize.sh here"
    )
    objs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        objs.extend(d for d in yaml.safe_load_all((ACCESS_DIR / name).read_text()) if d)
    return objs


def apply(kube: Kube, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj``, or replace it when it exists (``kubectl apply`` for these few kinds)."""
    base = _PATHS[(obj["apiVersion"], obj["kind"])].format(ns=obj["metadata"].get("namespace", ""))
    name = obj["metadata"]["name"]
    try:
        return kube.post(base, obj)
    except KubeError as exc:
        if exc.status != 409:
            raise
    current = kube.get(f"{base}/{name}")
    return kube.call("PUT", f"{base}/{name}", {**obj, "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}})


def service_account_kubeconfig(kube: Kube, namespace: str, name: str, path: Path) -> tuple[Path, str]:
    """A kubeconfig carrying a fresh token of ServiceAccount ``namespace/name`` (TokenRequest API), and the token."""
    tr = kube.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
    )
    token = tr["status"]["token"]
    cp = kube.cp
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": cp.api_url, "certificate-authority": str(cp.ca)}}],
                "users": [{"name": name, "user": {"token": token}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": name}}],
                "current-context": "local",
            }
        )
    )
    return path, token


# -- etcd and the network -------------------------------------------------------------------


def etcd_compact(cp: ControlPlane) -> int:
    """Compact etcd's history up to its current revision (etcd's gRPC gateway); returns that revision.

    Afterwards a watch from any older resourceVersion answers 410 Gone.
    """
    rng = requests.post(f"{cp.etcd_url}/v3/kv/range", json={"key": base64.b64encode(b"/").decode()}, timeout=10)
    rng.raise_for_status()
    rev = int(rng.json()["header"]["revision"])
    r = requests.post(f"{cp.etcd_url}/v3/kv/compaction", json={"revision": str(rev), "physical": True}, timeout=30)
    r.raise_for_status()
    return rev


@dataclass
class PausableProxy:
    """A TCP forwarder on 127.0.0.1 to ``target``, which a test can cut (``cut()``) and heal (``heal()``).

    Cut: open connections are reset and new ones are closed at once, as in a
    network partition between the collector and its API server.
    """

    target: tuple[str, int]
    port: int = 0
    _cut: threading.Event = field(default_factory=threading.Event)
    _conns: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True, name="kp-proxy")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def heal(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._listener.close()
