"""wsclient.py -- a minimal RFC 6455 WebSocket client on the standard library,
for the streamer's tests and benchmark: the opening handshake, masked text
frames out, unmasked frames in (fragments joined, pings answered), close
frames with their code and reason.

    ws = WS(port, "/stream?filter=session:s1")       # raises HandshakeError on non-101
    ws = WS(port, "/stream", ssl_context=ctx)         # wss:// (ctx: an ssl.SSLContext)
    ws.send_json({"type": "filter", "filter": "type:Stop"})
    msg = ws.recv_json(timeout=5)                    # dict, list (a batch) or None
    ws.close()

`Reader` parses frames from bytes fed to it, so many clients can share one
selector loop (see test_streamer.py).
"""
import base64
import json
import os
import select
import socket
import struct
import time

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeError(Exception):
    def __init__(self, status, headers, body):
        super().__init__("handshake answered %s: %r" % (status, body[:200]))
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__("closed by server: %s %r" % (code, reason))
        self.code = code
        self.reason = reason


def frame(opcode, payload, mask=True):
    """One final frame, masked as a client must."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + body


class Reader:
    """Incremental frame parser: feed() bytes, then messages() yields
    (opcode, payload) for whole messages and control frames."""

    def __init__(self):
        self.buf = bytearray()
        self.parts = []
        self.part_op = None

    def feed(self, data):
        self.buf += data

    def messages(self):
        out = []
        while True:
            b = self.buf
            if len(b) < 2:
                break
            fin, op = b[0] & 0x80, b[0] & 0x0F
            masked, n = b[1] & 0x80, b[1] & 0x7F
            off = 2
            if n == 126:
                if len(b) < 4:
                    break
                n = struct.unpack("!H", b[2:4])[0]
                off = 4
            elif n == 127:
                if len(b) < 10:
                    break
                n = struct.unpack("!Q", b[2:10])[0]
                off = 10
            if masked:
                off += 4
            if len(b) < off + n:
                break
            payload = bytes(b[off:off + n])
            if masked:
                key = b[off - 4:off]
                payload = bytes(x ^ key[i % 4] for i, x in enumerate(payload))
            del b[:off + n]
            if op >= OP_CLOSE:
                out.append((op, payload))
                continue
            if op != OP_CONT:
                self.part_op = op
                self.parts = []
            self.parts.append(payload)
            if fin:
                out.append((self.part_op, b"".join(self.parts)))
                self.parts = []
        return out


def parse_close(payload):
    if len(payload) >= 2:
        return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")
    return 1005, ""


def handshake(sock, host, port, path, protocol=None, headers=None):
    """Returns (bytes after the 101 answer, its headers); raises HandshakeError."""
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (path, host, port, key))
    if protocol:
        req += "Sec-WebSocket-Protocol: %s\r\n" % protocol
    for k, v in (headers or {}).items():
        req += "%s: %s\r\n" % (k, v)
    sock.sendall((req + "\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise HandshakeError(0, {}, data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if status != 101:
        want = int(headers.get("content-length", "0"))
        while len(rest) < want:
            chunk = sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        raise HandshakeError(status, headers, rest)
    return rest, headers


class WS:
    def __init__(self, port, path="/stream", host="127.0.0.1", timeout=10, rcvbuf=None,
                 protocol=None, ssl_context=None, headers=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # before connect, so that the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            try:
                self.sock = ssl_context.wrap_socket(self.sock, server_hostname=host)
            except Exception:
                self.sock.close()
                raise
        self.reader = Reader()
        try:
            rest, hdrs = handshake(self.sock, host, port, path, protocol, headers)
        except Exception:
            self.sock.close()
            raise
        self.protocol = hdrs.get("sec-websocket-protocol")  # the subprotocol the server chose
        self.pending = []
        self.closed = None
        self.pings = 0
        self.reader.feed(rest)  # frames that came with the 101 answer
        for op, payload in self.reader.messages():
            self.handle(op, payload)

    def fileno(self):
        return self.sock.fileno()

    def send_text(self, text):
        self.sock.sendall(frame(OP_TEXT, text.encode()))

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def _pump(self, timeout):
        """Read once (waiting up to timeout); queue whole messages."""
        # TLS may hold decrypted bytes that select() cannot see
        buffered = hasattr(self.sock, "pending") and self.sock.pending() > 0
        if not buffered:
            r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not r:
                return False
        data = self.sock.recv(1 << 20)
        if not data:
            if self.closed is None:
                self.closed = (1006, "")
            return True
        self.reader.feed(data)
        for op, payload in self.reader.messages():
            self.handle(op, payload)
        return True

    def handle(self, op, payload):
        if op == OP_PING:
            self.pings += 1
            self.sock.sendall(frame(OP_PONG, payload))
        elif op == OP_CLOSE:
            self.closed = parse_close(payload)
            try:
                self.sock.sendall(frame(OP_CLOSE, payload[:2]))
            except OSError:
                pass
        elif op == OP_TEXT:
            self.pending.append(payload.decode())

    def recv_text(self, timeout=5.0):
        deadline = time.time() + timeout
        while not self.pending:
            if self.closed:
                raise Closed(*self.closed)
            left = deadline - time.time()
            if left <= 0:
                return None
            self._pump(left)
        return self.pending.pop(0)

    def recv_json(self, timeout=5.0):
        t = self.recv_text(timeout)
        return None if t is None else json.loads(t)

    def wait_closed(self, timeout=5.0):
        deadline = time.time() + timeout
        while self.closed is None and time.time() < deadline:
            try:
                self._pump(deadline - time.time())
            except OSError:
                self.closed = (1006, "")
        return self.closed

    def close(self, code=1000):
        try:
            if self.closed is None:
                self.sock.sendall(frame(OP_CLOSE, struct.pack("!H", code)))
        except OSError:
            pass
        self.sock.close()


def flatten(msg):
    """A frame is one message object or a JSON array of them (a batch)."""
    return msg if isinstance(msg, list) else [msg]
