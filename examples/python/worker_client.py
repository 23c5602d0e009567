#!/usr/bin/env python3
"""A worker reads one secret from secretd over gRPC (grpcio).

    # Over the local Unix socket (the sidecar setup), with a service-account token:
    SECRETD_TOKEN=sdt_... python worker_client.py -n company.team.etl db/password
    # Over TCP with TLS; add --client-cert/--client-key for mutual TLS:
    python worker_client.py --addr https://secretd.internal:7878 --ca-cert ca.pem \\
        --token-file /run/secrets/secretd.token -n company.team.etl db/password

The stubs are generated from proto/secretd/v1/broker.proto by generate.sh
into a directory this script finds through SECRETD_PY_STUBS (default: gen/
beside it).

Exit codes (the Rust example uses the same): 0 the value was printed,
3 NOT_FOUND, 4 PERMISSION_DENIED, 5 UNAUTHENTICATED, 6 UNAVAILABLE,
1 anything else, 2 bad arguments.
"""

import argparse
import os
import sys

# gRPC's core logs failed TLS handshakes and the like on stderr by itself;
# this client reports every failure in one line of its own instead.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
import grpc  # noqa: E402  (reads GRPC_VERBOSITY when imported)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("SECRETD_PY_STUBS", os.path.join(HERE, "gen")))
try:
    from secretd.v1 import broker_pb2, broker_pb2_grpc
except ImportError as e:
    sys.exit(f"error: the secretd stubs are missing ({e}); run examples/python/generate.sh first")

EXIT_CODES = {
    grpc.StatusCode.NOT_FOUND: 3,
    grpc.StatusCode.PERMISSION_DENIED: 4,
    grpc.StatusCode.UNAUTHENTICATED: 5,
    grpc.StatusCode.UNAVAILABLE: 6,
}


def parse_args():
    env = os.environ.get
    p = argparse.ArgumentParser(description="Read one secret from secretd and print its value.")
    p.add_argument("--addr", default=env("SECRETD_ADDR", "unix:///run/secretd/secretd.sock"),
                   help="unix:///PATH, https://HOST:PORT (needs --ca-cert), or http://HOST:PORT (loopback dev only)")
    p.add_argument("--ca-cert", help="the CA that signed the daemon's certificate (PEM), for https://")
    p.add_argument("--client-cert", help="this worker's certificate (PEM), for mutual TLS")
    p.add_argument("--client-key", help="this worker's private key (PEM), for mutual TLS")
    p.add_argument("--token-file", help="a file holding the token; otherwise SECRETD_TOKEN; with neither, "
                   "no token is sent and the daemon goes by the socket peer's uid or the client certificate")
    p.add_argument("-n", "--namespace", default=env("SECRETD_NAMESPACE"), required=not env("SECRETD_NAMESPACE"))
    p.add_argument("--tenant", default=env("SECRETD_TENANT", ""), help="empty means main")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for the whole call")
    p.add_argument("key")
    args = p.parse_args()
    if bool(args.client_cert) != bool(args.client_key):
        p.error("--client-cert and --client-key go together")
    if args.addr.startswith("https://") and not args.ca_cert:
        p.error("https:// needs --ca-cert")
    return args


def read(path):
    with open(path, "rb") as f:
        return f.read()


def open_channel(args):
    """A channel to the daemon: a Unix socket, or TCP with (optionally mutual) TLS."""
    if args.addr.startswith("unix://"):
        # gRPC dials unix:///PATH itself; the socket's file mode and the peer's uid guard it.
        # No channel option is needed: secretd accepts the socket path grpcio sends as the
        # HTTP/2 :authority on its Unix socket.
        return grpc.insecure_channel(args.addr)
    if args.addr.startswith("https://"):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca_cert),
            private_key=read(args.client_key) if args.client_key else None,
            certificate_chain=read(args.client_cert) if args.client_cert else None,
        )
        return grpc.secure_channel(args.addr[len("https://"):], credentials)
    if args.addr.startswith("http://"):
        return grpc.insecure_channel(args.addr[len("http://"):])
    raise ValueError(f"--addr {args.addr}: expected unix://, https:// or http://")


def token_metadata(args):
    """`authorization: Bearer <token>`, or nothing. Never take a token as an
    argument: other local users can read the process list."""
    if args.token_file:
        token = read(args.token_file).decode().strip()
    else:
        token = os.environ.get("SECRETD_TOKEN", "").strip()
    return (("authorization", f"Bearer {token}"),) if token else ()


def explain(err, args):
    """A message a worker's operator can act on."""
    code = err.code()
    what = {
        grpc.StatusCode.NOT_FOUND: f"no secret {args.key} in {args.namespace} or its parent namespaces",
        grpc.StatusCode.PERMISSION_DENIED: f"this worker may not read {args.namespace}/{args.key}",
        grpc.StatusCode.UNAUTHENTICATED: "the token is missing, unknown, expired or revoked",
        grpc.StatusCode.UNAVAILABLE: f"secretd at {args.addr} or its backend cannot be reached; retry later",
    }.get(code, "the call failed")
    return f"{code.name}: {what} ({err.details()})"


def main():
    args = parse_args()
    try:
        metadata = token_metadata(args)
        channel = open_channel(args)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    request = broker_pb2.GetSecretRequest(tenant=args.tenant, namespace=args.namespace, key=args.key)
    try:
        with channel:
            stub = broker_pb2_grpc.SecretBrokerStub(channel)
            response = stub.GetSecret(request, metadata=metadata, timeout=args.timeout)
    except grpc.RpcError as err:
        print(f"error: {explain(err, args)}", file=sys.stderr)
        return EXIT_CODES.get(err.code(), 1)
    # Printing the value is this example's whole point. A real worker keeps it
    # in memory, hands it to what needs it, and never prints or logs it.
    sys.stdout.buffer.write(response.value)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
