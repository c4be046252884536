"""Loopback fakes of Pinecone for the SDK tests, beyond llmo_testkit's
FakePinecone: the REST data plane's newer operations (integrated-inference
search with rerank, update by metadata filter, list, fetch by metadata),
Pinecone Inference (embed, rerank), and the gRPC data plane that pinecone
10's ``GrpcIndex`` talks to (its built-in tonic channel), served over
plaintext HTTP/2 with ``h2`` (already installed: pinecone needs
``httpx[http2]``). Responses are in the API's wire shapes (JSON, or protobuf
per Pinecone's ``db_data`` proto); the real clients decode them."""

from __future__ import annotations

import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from llmo_testkit import LoopbackServer

EMBED_TOKENS = 12  # a search's embed_total_tokens
RERANK_UNITS = 1  # a search's rerank_units with rerank
SEARCH_RU = 6
LIST_RU = (1, 2)  # read units of list pages 1 and 2
FBM_RU = 4  # fetch_by_metadata
MATCHED = 42  # update by filter: matchedRecords
INFER_EMBED_TOKENS = 17
INFER_RERANK_UNITS = 3


class FakeDataPlane(LoopbackServer):
    """REST: an index's data plane and Pinecone Inference on one host.
    ``with_usage = False`` drops ``usage`` from list and fetch_by_metadata
    pages; ``requests`` records (method, path, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.with_usage = True
        self.fail_with: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _reply(self, status: int, obj: Any) -> None:
                out = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _handle(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body: Any = json.loads(self.rfile.read(n)) if n else {}
                url = urlsplit(self.path)
                path, query = url.path, parse_qs(url.query)
                outer.requests.append((method, path, body or query))
                if outer.fail_with:
                    return self._reply(outer.fail_with, {"code": 3, "message": "bad request", "details": []})
                usage = outer.with_usage
                if path.startswith("/records/namespaces/") and path.endswith("/search"):
                    u: dict[str, int] = {"read_units": SEARCH_RU, "embed_total_tokens": EMBED_TOKENS}
                    if body.get("rerank"):
                        u["rerank_units"] = RERANK_UNITS
                    hit = {"_id": "r1", "_score": 0.77, "fields": {"text": "hello"}}
                    return self._reply(200, {"result": {"hits": [hit]}, "usage": u})
                if path == "/vectors/update":
                    return self._reply(200, {"matchedRecords": MATCHED} if "filter" in body else {})
                if path == "/vectors/list":
                    ns = query.get("namespace", [""])[0]
                    if query.get("paginationToken") == ["p2"]:
                        page: dict[str, Any] = {"vectors": [{"id": "a3"}], "namespace": ns}
                        ru = LIST_RU[1]
                    else:
                        page = {"vectors": [{"id": "a1"}, {"id": "a2"}], "pagination": {"next": "p2"}, "namespace": ns}
                        ru = LIST_RU[0]
                    if usage:
                        page["usage"] = {"readUnits": ru}
                    return self._reply(200, page)
                if path == "/vectors/fetch_by_metadata":
                    vecs = {i: {"id": i, "values": [0.1, 0.2, 0.3]} for i in ("m1", "m2")}
                    page = {"vectors": vecs, "namespace": body.get("namespace", "")}
                    if usage:
                        page["usage"] = {"readUnits": FBM_RU}
                    return self._reply(200, page)
                if path == "/embed":
                    dense = [{"values": [0.1, 0.2], "vector_type": "dense"} for _ in body["inputs"]]
                    r = {"model": body["model"], "vector_type": "dense", "data": dense}
                    return self._reply(200, {**r, "usage": {"total_tokens": INFER_EMBED_TOKENS}})
                if path == "/rerank":
                    ranked = [{"index": 0, "score": 0.9, "document": body["documents"][0]}]
                    r = {"model": body["model"], "data": ranked}
                    return self._reply(200, {**r, "usage": {"rerank_units": INFER_RERANK_UNITS}})
                return self._reply(404, {"code": 5, "message": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

        self._serve(Handler)


# ------------------------------------------------------------------ protobuf
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_int(num: int, n: int) -> bytes:
    return _varint(num << 3) + _varint(n)


def pb_bytes(num: int, data: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def pb_str(num: int, text: str) -> bytes:
    return pb_bytes(num, text.encode())


def pb_float(num: int, x: float) -> bytes:
    return _varint(num << 3 | 5) + struct.pack("<f", x)


def pb_floats(num: int, xs: list[float]) -> bytes:  # packed repeated float
    return pb_bytes(num, b"".join(struct.pack("<f", x) for x in xs))


def pb_fields(data: bytes) -> dict[int, list[Any]]:
    """Top-level fields of a message: number -> values (int or bytes)."""
    out: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = n = 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return n

    while i < len(data):
        key = varint()
        num, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value = varint()
        elif wire == 2:
            size = varint()
            value = data[i : i + size]
            i += size
        elif wire == 5:
            value = data[i : i + 4]
            i += 4
        else:  # 64-bit
            value = data[i : i + 8]
            i += 8
        out.setdefault(num, []).append(value)
    return out


def _usage(ru: int) -> bytes:
    return pb_int(1, ru)  # Usage.read_units


def _vector(vid: str) -> bytes:
    return pb_str(1, vid) + pb_floats(2, [0.1, 0.2, 0.3])


def _vector_map(num: int, ids: list[str]) -> bytes:  # map<string, Vector>
    return b"".join(pb_bytes(num, pb_str(1, i) + pb_bytes(2, _vector(i))) for i in ids)


class FakeGrpcDataPlane:
    """Pinecone's gRPC ``VectorService`` on a loopback port, plaintext HTTP/2
    (prior knowledge, as tonic dials an ``http://`` endpoint). ``calls``
    records (method, request fields); ``with_usage = False`` drops the
    responses' optional ``usage``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[int, list[Any]]]] = []
        self.with_usage = True
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        sock.sendall(h2c.data_to_send())
        paths: dict[int, str] = {}
        bodies: dict[int, bytearray] = {}
        with sock:
            while True:
                try:
                    data = sock.recv(65535)
                except OSError:
                    return
                if not data:
                    return
                for ev in h2c.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        paths[ev.stream_id] = dict(ev.headers)[b":path"].decode()
                        bodies[ev.stream_id] = bytearray()
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] += ev.data
                        h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        sid = ev.stream_id
                        body = bytes(bodies.pop(sid))
                        method = paths.pop(sid).rsplit("/", 1)[-1]
                        request = pb_fields(body[5:])  # after the gRPC frame header
                        self.calls.append((method, request))
                        reply = self._reply(method, request)
                        h2c.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                        h2c.send_data(sid, b"\0" + struct.pack(">I", len(reply)) + reply)
                        h2c.send_headers(sid, [("grpc-status", "0")], end_stream=True)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        return
                try:
                    sock.sendall(h2c.data_to_send())
                except OSError:
                    return

    def _reply(self, method: str, req: dict[int, list[Any]]) -> bytes:
        u = self.with_usage
        if method == "Query":  # QueryResponse
            ns = req.get(1, [b""])[0].decode()
            matches = pb_bytes(2, pb_str(1, "v1") + pb_float(2, 0.9)) + pb_bytes(2, pb_str(1, "v2") + pb_float(2, 0.8))
            return matches + pb_str(3, ns) + (pb_bytes(4, _usage(5)) if u else b"")
        if method == "Fetch":  # FetchResponse
            return _vector_map(1, ["v1"]) + pb_str(2, "docs") + (pb_bytes(3, _usage(1)) if u else b"")
        if method == "FetchByMetadata":  # FetchByMetadataResponse
            return _vector_map(1, ["m1", "m2"]) + pb_str(2, "docs") + (pb_bytes(3, _usage(FBM_RU)) if u else b"")
        if method == "List":  # ListResponse; ListRequest.pagination_token = 3
            if req.get(3) == [b"p2"]:
                page = pb_bytes(1, pb_str(1, "a3")) + pb_str(3, "docs")
                return page + (pb_bytes(4, _usage(LIST_RU[1])) if u else b"")
            page = pb_bytes(1, pb_str(1, "a1")) + pb_bytes(1, pb_str(1, "a2")) + pb_bytes(2, pb_str(1, "p2"))
            return page + pb_str(3, "docs") + (pb_bytes(4, _usage(LIST_RU[0])) if u else b"")
        if method == "Update":  # UpdateResponse; UpdateRequest.filter = 6
            return pb_int(1, MATCHED) if 6 in req else b""
        if method == "Upsert":  # UpsertResponse
            return pb_int(1, len(req.get(1, [])))
        return b""  # DeleteResponse and the rest: empty
